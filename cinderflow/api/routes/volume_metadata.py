"""`/volumes/{id}/metadata`: Cinder's volume metadata sub-resource."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cinderflow.api import policy
from cinderflow.api.errors import BadRequest, NotFound, invalid_volume
from cinderflow.api.routes.volumes import visible_volume
from cinderflow.api.routing import ApiRequest, Router
from cinderflow.api.schemas.volumes import (
    MetadataBody,
    MetadataResponse,
    MetaItemBody,
    MetaItemResponse,
)
from cinderflow.db import volumes as volume_db
from cinderflow.db.models import Volume

router = Router()
BASE = "/volumes/{volume_id}/metadata"
ITEM_NOT_FOUND = "Metadata item was not found"


async def _in_transaction(req: ApiRequest, action: str, work: Callable[[Session, Volume], Any]):
    """Run `work` on the caller's volume after the policy and maintenance checks."""

    def run() -> Any:
        with req.services.db.transaction() as session:
            reading = action == "volume:get_volume_metadata"
            volume = visible_volume(
                session, req.ctx, req.path_params["volume_id"], for_update=not reading
            )
            policy.authorize(req.ctx, action, volume.project_id)
            if not reading and volume.status == "maintenance":
                raise invalid_volume(
                    "The volume metadata cannot be updated when the volume is in maintenance mode."
                )
            return work(session, volume)

    return await run_in_threadpool(run)


def _all(session: Session, volume: Volume) -> dict[str, str]:
    return volume_db.metadata_of(session, [volume.id])[volume.id]


@router.route("GET", BASE, response=MetadataResponse)
async def index(req: ApiRequest) -> Response:
    """Show a volume's metadata."""
    found = await _in_transaction(req, "volume:get_volume_metadata", _all)
    return JSONResponse({"metadata": found})


@router.route("POST", BASE, body=MetadataBody, response=MetadataResponse)
async def create(req: ApiRequest) -> Response:
    """Add or change metadata keys; others are kept."""
    return await _write_all(req, "volume:create_volume_metadata", replace=False)


@router.route("PUT", BASE, body=MetadataBody, response=MetadataResponse)
async def replace(req: ApiRequest) -> Response:
    """Replace all metadata."""
    return await _write_all(req, "volume:update_volume_metadata", replace=True)


async def _write_all(req: ApiRequest, action: str, *, replace: bool) -> Response:
    assert isinstance(req.body, MetadataBody)
    items = req.body.metadata

    def work(session: Session, volume: Volume) -> dict[str, str]:
        volume_db.set_metadata(session, volume.id, items, replace=replace)
        return _all(session, volume)

    return JSONResponse({"metadata": await _in_transaction(req, action, work)})


@router.route("GET", BASE + "/{key}", response=MetaItemResponse)
async def show(req: ApiRequest) -> Response:
    """Show one metadata item."""
    key = req.path_params["key"]

    def work(session: Session, volume: Volume) -> str:
        found = _all(session, volume)
        if key not in found:
            raise NotFound(ITEM_NOT_FOUND)
        return found[key]

    value = await _in_transaction(req, "volume:get_volume_metadata", work)
    return JSONResponse({"meta": {key: value}})


@router.route("PUT", BASE + "/{key}", body=MetaItemBody, response=MetaItemResponse)
async def update(req: ApiRequest) -> Response:
    """Set one metadata item; the body must name exactly the key in the URL."""
    assert isinstance(req.body, MetaItemBody)
    key, items = req.path_params["key"], req.body.meta
    if len(items) > 1:
        raise BadRequest("Request body contains too many items")
    if key not in items:
        raise BadRequest("Request body and URI mismatch")

    def work(session: Session, volume: Volume) -> None:
        volume_db.set_metadata(session, volume.id, items, replace=False)

    await _in_transaction(req, "volume:update_volume_metadata", work)
    return JSONResponse({"meta": items})


@router.route("DELETE", BASE + "/{key}")
async def delete(req: ApiRequest) -> Response:
    """Remove one metadata item."""
    key = req.path_params["key"]

    def work(session: Session, volume: Volume) -> None:
        if not volume_db.delete_metadata_key(session, volume.id, key):
            raise NotFound(ITEM_NOT_FOUND)

    await _in_transaction(req, "volume:delete_volume_metadata", work)
    return Response(status_code=200)
