"""`/<resource>/{id}/metadata`: one implementation for volume and snapshot metadata."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cinderflow.api import policy
from cinderflow.api.context import RequestContext
from cinderflow.api.errors import BadRequest, NotFound
from cinderflow.api.routing import ApiRequest, Router
from cinderflow.api.schemas.volumes import (
    MetadataBody,
    MetadataResponse,
    MetaItemBody,
    MetaItemResponse,
)
from cinderflow.db.metadata import MetadataTable, delete_key, metadata_of, set_metadata


@dataclass(frozen=True)
class MetadataResource:
    base: str
    """e.g. `/volumes/{volume_id}/metadata`"""
    param: str
    table: MetadataTable
    load: Callable[[Session, RequestContext, str, bool], Any]
    """(session, caller, id, for_update) -> the owning row, or a 404 fault."""
    read_policy: str
    create_policy: str
    update_policy: str
    delete_policy: str
    missing_key: Callable[[str, str], str]
    """(owner id, key) -> the 404 message."""
    writable: Callable[[Any], None] = lambda row: None
    """Raises when the owner's metadata may not change now (e.g. maintenance)."""


def metadata_router(resource: MetadataResource) -> Router:
    router = Router()
    base, table = resource.base, resource.table

    async def in_transaction(req: ApiRequest, action: str, work: Callable[[Session, Any], Any]):
        reading = action == resource.read_policy

        def run() -> Any:
            with req.services.db.transaction() as session:
                row = resource.load(session, req.ctx, req.path_params[resource.param], not reading)
                policy.authorize(req.ctx, action, row.project_id)
                if not reading:
                    resource.writable(row)
                return work(session, row)

        return await run_in_threadpool(run)

    def everything(session: Session, row: Any) -> dict[str, str]:
        return metadata_of(session, table, [row.id])[row.id]

    async def write_all(req: ApiRequest, action: str, *, replace: bool) -> Response:
        assert isinstance(req.body, MetadataBody)
        items = req.body.metadata

        def work(session: Session, row: Any) -> dict[str, str]:
            set_metadata(session, table, row.id, items, replace=replace)
            return everything(session, row)

        return JSONResponse({"metadata": await in_transaction(req, action, work)})

    @router.route("GET", base, response=MetadataResponse)
    async def index(req: ApiRequest) -> Response:
        """Show the metadata."""
        return JSONResponse(
            {"metadata": await in_transaction(req, resource.read_policy, everything)}
        )

    @router.route("POST", base, body=MetadataBody, response=MetadataResponse)
    async def create(req: ApiRequest) -> Response:
        """Add or change keys; others are kept."""
        return await write_all(req, resource.create_policy, replace=False)

    @router.route("PUT", base, body=MetadataBody, response=MetadataResponse)
    async def replace(req: ApiRequest) -> Response:
        """Replace all metadata."""
        return await write_all(req, resource.update_policy, replace=True)

    @router.route("GET", base + "/{key}", response=MetaItemResponse)
    async def show(req: ApiRequest) -> Response:
        """Show one item."""
        key = req.path_params["key"]

        def work(session: Session, row: Any) -> str:
            found = everything(session, row)
            if key not in found:
                raise NotFound(resource.missing_key(row.id, key))
            return found[key]

        return JSONResponse({"meta": {key: await in_transaction(req, resource.read_policy, work)}})

    @router.route("PUT", base + "/{key}", body=MetaItemBody, response=MetaItemResponse)
    async def update(req: ApiRequest) -> Response:
        """Set one item; the body must name exactly the key in the URL."""
        assert isinstance(req.body, MetaItemBody)
        key, items = req.path_params["key"], req.body.meta
        if len(items) > 1:
            raise BadRequest("Request body contains too many items")
        if key not in items:
            raise BadRequest("Request body and URI mismatch")

        def work(session: Session, row: Any) -> None:
            set_metadata(session, table, row.id, items, replace=False)

        await in_transaction(req, resource.update_policy, work)
        return JSONResponse({"meta": items})

    @router.route("DELETE", base + "/{key}")
    async def delete(req: ApiRequest) -> Response:
        """Remove one item."""
        key = req.path_params["key"]

        def work(session: Session, row: Any) -> None:
            if not delete_key(session, table, row.id, key):
                raise NotFound(resource.missing_key(row.id, key))

        await in_transaction(req, resource.delete_policy, work)
        return Response(status_code=200)

    return router
