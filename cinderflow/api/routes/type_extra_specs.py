"""`/types/{id}/extra_specs`: capabilities a type asks of backends. Changing them is refused
while any volume has the type (Cinder removed the option that allowed it)."""

from __future__ import annotations

from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cinderflow.api import policy
from cinderflow.api.errors import BadRequest, NotFound
from cinderflow.api.routes.types import USER_VISIBLE_EXTRA_SPECS, type_not_found, visible_type
from cinderflow.api.routing import ApiRequest, Router
from cinderflow.api.schemas.types import ExtraSpecsBody, OneExtraSpec, SpecItem
from cinderflow.db import types as type_db
from cinderflow.db import volumes as volume_db
from cinderflow.db.models import VolumeType, VolumeTypeExtraSpec

router = Router()
BASE = "/types/{type_id}/extra_specs"
IS_TRUE = "<is> True"


def _no_such_key(type_id: str, key: str) -> NotFound:
    return NotFound(f"Volume Type {type_id} has no extra specs with key {key}.")


def _writable_type(session: Session, type_id: str) -> VolumeType:
    if type_db.in_use(session, type_id):
        raise BadRequest("Volume Type is currently in use.")
    vtype = session.get(VolumeType, type_id, with_for_update=True)
    if vtype is None:
        raise type_not_found(type_id)
    return vtype


def _readable(req: ApiRequest, specs: dict[str, str]) -> dict[str, str]:
    if policy.allowed(req.ctx, "volume_extension:types_extra_specs:read_sensitive"):
        return specs
    return {k: v for k, v in specs.items() if k in USER_VISIBLE_EXTRA_SPECS}


def _set(session: Session, type_id: str, items: dict[str, str]) -> None:
    merged = {**volume_db.extra_specs(session, type_id), **items}
    if merged.get("multiattach") == IS_TRUE and merged.get("cacheable") == IS_TRUE:
        raise BadRequest("cacheable cannot be set with multiattach.")
    for key, value in items.items():
        session.merge(VolumeTypeExtraSpec(volume_type_id=type_id, key=key, value=value))


@router.route("GET", BASE, response=ExtraSpecsBody)
async def index(req: ApiRequest) -> Response:
    """A type's extra specs (non-admins see only the user-visible ones)."""
    policy.authorize(req.ctx, "volume_extension:types_extra_specs:index")

    def run() -> dict[str, str]:
        with req.services.db.read() as session:
            vtype = visible_type(session, req, req.path_params["type_id"])
            return _readable(req, volume_db.extra_specs(session, vtype.id))

    return JSONResponse({"extra_specs": await run_in_threadpool(run)})


@router.route("POST", BASE, body=ExtraSpecsBody, response=ExtraSpecsBody)
async def create(req: ApiRequest) -> Response:
    """Add or change extra specs."""
    policy.authorize(req.ctx, "volume_extension:types_extra_specs:create")
    assert isinstance(req.body, ExtraSpecsBody)
    items = req.body.extra_specs

    def run() -> None:
        with req.services.db.transaction() as session:
            _set(session, _writable_type(session, req.path_params["type_id"]).id, items)

    await run_in_threadpool(run)
    return JSONResponse({"extra_specs": items})


@router.route("GET", BASE + "/{key}", response=SpecItem)
async def show(req: ApiRequest) -> Response:
    """One extra spec, as `{key: value}`."""
    policy.authorize(req.ctx, "volume_extension:types_extra_specs:show")
    key = req.path_params["key"]

    def run() -> str:
        with req.services.db.read() as session:
            vtype = visible_type(session, req, req.path_params["type_id"])
            specs = _readable(req, volume_db.extra_specs(session, vtype.id))
            if key not in specs:
                raise _no_such_key(vtype.id, key)
            return specs[key]

    return JSONResponse({key: await run_in_threadpool(run)})


@router.route("PUT", BASE + "/{key}", body=OneExtraSpec, response=SpecItem)
async def update(req: ApiRequest) -> Response:
    """Set one extra spec; the body is `{key: value}` for exactly the key in the URL."""
    policy.authorize(req.ctx, "volume_extension:types_extra_specs:update")
    assert isinstance(req.body, OneExtraSpec)
    key, body = req.path_params["key"], req.body.root
    if key not in body:
        raise BadRequest("Request body and URI mismatch")

    def run() -> None:
        with req.services.db.transaction() as session:
            _set(session, _writable_type(session, req.path_params["type_id"]).id, body)

    await run_in_threadpool(run)
    return JSONResponse(body)


@router.route("DELETE", BASE + "/{key}", status=202)
async def delete(req: ApiRequest) -> Response:
    """Remove one extra spec."""
    policy.authorize(req.ctx, "volume_extension:types_extra_specs:delete")
    key = req.path_params["key"]
    type_id = req.path_params["type_id"]

    def run() -> None:
        with req.services.db.transaction() as session:
            if session.get(VolumeType, type_id) is None:
                raise type_not_found(type_id)
            if type_db.in_use(session, type_id):
                raise BadRequest("Volume Type is currently in use.")
            row = session.exec(
                select(VolumeTypeExtraSpec).where(
                    VolumeTypeExtraSpec.volume_type_id == type_id, VolumeTypeExtraSpec.key == key
                )
            ).first()
            if row is None:
                raise _no_such_key(type_id, key)
            session.delete(row)

    await run_in_threadpool(run)
    return Response(status_code=202)
