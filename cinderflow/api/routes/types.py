"""`/types`: volume types and their project access (Cinder's types, types_manage, type access)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cinderflow.api import microversions as mv
from cinderflow.api import policy
from cinderflow.api.errors import ApiError, BadRequest, Conflict, NotFound
from cinderflow.api.params import dict_param
from cinderflow.api.routing import ApiRequest, Router
from cinderflow.api.schemas.types import (
    AddProjectAccess,
    RemoveProjectAccess,
    TypeAccessList,
    TypeCreateBody,
    TypeUpdate,
    TypeUpdateBody,
    VolumeTypeBody,
    VolumeTypeList,
)
from cinderflow.api.validation import parse_bool
from cinderflow.db import types as type_db
from cinderflow.db.models import Quota, VolumeType, VolumeTypeExtraSpec, VolumeTypeProject, utcnow
from cinderflow.quota.engine import PER_TYPE
from cinderflow.settings import Settings

router = Router()
USER_VISIBLE_EXTRA_SPECS = ("RESKEY:availability_zones", "multiattach", "replication_enabled")
LIST_FILTERS = frozenset({"is_public", "extra_specs"})


def type_not_found(ref: str) -> NotFound:
    return NotFound(f"Volume type {ref} could not be found.")


def visible_type(session: Session, req: ApiRequest, ref: str) -> VolumeType:
    """The type by id (or name) if the caller may see it: admins see all, others public or
    shared types."""
    found = type_db.find(session, ref, project_id=None if req.ctx.is_admin else req.ctx.project_id)
    if found is None:
        raise type_not_found(ref)
    return found


def default_type(session: Session, settings: Settings) -> VolumeType:
    found = type_db.find(session, settings.default_volume_type)
    if found is None:
        raise ApiError(
            "The request cannot be fulfilled as the default volume type "
            f"{settings.default_volume_type} cannot be found."
        )
    return found


def type_view(
    req: ApiRequest, vtype: VolumeType, specs: dict[str, str], *, mode: str = "show"
) -> dict[str, Any]:
    """Cinder's views: `show` filters extra specs by role; `create`/`update` echo them all."""
    view: dict[str, Any] = {
        "id": vtype.id,
        "name": vtype.name,
        "is_public": vtype.is_public,
        "description": vtype.description,
    }
    ctx = req.ctx
    if mode != "show":
        view["extra_specs"] = specs
    else:
        if policy.allowed(ctx, "volume_extension:access_types_extra_specs"):
            sensitive = policy.allowed(ctx, "volume_extension:types_extra_specs:read_sensitive")
            view["extra_specs"] = (
                specs
                if sensitive
                else {k: v for k, v in specs.items() if k in USER_VISIBLE_EXTRA_SPECS}
            )
        if policy.allowed(ctx, "volume_extension:access_types_qos_specs_id"):
            view["qos_specs_id"] = None
    if mode != "update" and policy.allowed(ctx, "volume_extension:volume_type_access"):
        view["os-volume-type-access:is_public"] = vtype.is_public
    return view


def _specs_of(session: Session, types: list[VolumeType]) -> dict[str, dict[str, str]]:
    specs: dict[str, dict[str, str]] = {t.id: {} for t in types}
    if types:
        rows = session.exec(
            select(VolumeTypeExtraSpec).where(
                VolumeTypeExtraSpec.volume_type_id.in_([t.id for t in types])
            )
        )
        for row in rows:
            specs[row.volume_type_id][row.key] = row.value
    return specs


# Read ---------------------------------------------------------------------------------------


@router.route("GET", "/types", response=VolumeTypeList)
async def index(req: ApiRequest) -> Response:
    """List volume types: public and shared ones; admins choose with `is_public` (none: all)."""
    ctx = req.ctx
    policy.authorize(ctx, "volume_extension:type_get_all")
    unknown = sorted(set(req.query) - LIST_FILTERS)
    if unknown and not ctx.is_admin and req.at_least(mv.SUPPORT_VOLUME_TYPE_FILTER):
        raise BadRequest(f"Invalid filters {','.join(unknown)} are found in query options.")
    is_public: bool | None = True
    raw = req.query.get("is_public")
    if ctx.is_admin and raw is not None:
        if raw.lower() == "none":
            is_public = None
        else:
            try:
                is_public = parse_bool(raw)
            except ValueError:
                raise BadRequest(f"Invalid is_public filter [{raw}]") from None
    wanted = dict_param(req, "extra_specs")

    def run() -> list[dict[str, Any]]:
        with req.services.db.read() as session:
            stmt = select(VolumeType).order_by(VolumeType.created_at.desc(), VolumeType.id.desc())
            if is_public is True:
                stmt = stmt.where(type_db.accessible(ctx.project_id))
            elif is_public is False:
                stmt = stmt.where(VolumeType.is_public.is_(False))
            types = list(session.exec(stmt))
            specs = _specs_of(session, types)
            hidden = set(wanted) - set(USER_VISIBLE_EXTRA_SPECS)
            if hidden and not policy.allowed(
                ctx, "volume_extension:types_extra_specs:read_sensitive"
            ):
                return []  # filtering on specs the caller may not read matches nothing (Cinder)
            matching = [t for t in types if wanted.items() <= specs[t.id].items()]
            return [type_view(req, t, specs[t.id]) for t in matching]

    return JSONResponse({"volume_types": await run_in_threadpool(run)})


@router.route("GET", "/types/{type_id}", response=VolumeTypeBody)
async def show(req: ApiRequest) -> Response:
    """Show a type; `default` is the configured default type."""
    ref = req.path_params["type_id"]

    def run() -> dict[str, Any]:
        with req.services.db.read() as session:
            if ref == "default":
                vtype = default_type(session, req.services.settings)
            else:
                vtype = visible_type(session, req, ref)
            policy.authorize(req.ctx, "volume_extension:type_get")
            return type_view(req, vtype, _specs_of(session, [vtype])[vtype.id])

    return JSONResponse({"volume_type": await run_in_threadpool(run)})


# Manage (admin) -----------------------------------------------------------------------------


@router.route("POST", "/types", body=TypeCreateBody, response=VolumeTypeBody)
async def create(req: ApiRequest) -> Response:
    """Create a volume type with its extra specs."""
    policy.authorize(req.ctx, "volume_extension:type_create")
    assert isinstance(req.body, TypeCreateBody)
    spec = req.body.volume_type

    def run() -> dict[str, Any]:
        with req.services.db.transaction() as session:
            if session.exec(select(VolumeType).where(VolumeType.name == spec.name)).first():
                raise Conflict(f"Volume Type {spec.name} already exists.")
            vtype = VolumeType(
                id=str(uuid.uuid4()),
                name=spec.name,
                description=spec.description,
                is_public=spec.is_public,
            )
            session.add(vtype)
            session.flush()
            specs = dict(spec.extra_specs or {})
            for key, value in specs.items():
                session.add(VolumeTypeExtraSpec(volume_type_id=vtype.id, key=key, value=value))
            return type_view(req, vtype, specs, mode="create")

    return JSONResponse({"volume_type": await run_in_threadpool(run)})


@router.route("PUT", "/types/{type_id}", body=TypeUpdateBody, response=VolumeTypeBody)
async def update_type(req: ApiRequest) -> Response:
    """Rename, describe, or publish/unpublish a type (allowed while in use)."""
    policy.authorize(req.ctx, "volume_extension:type_update")
    assert isinstance(req.body, TypeUpdateBody)
    change = req.body.volume_type
    if change.name is not None and not change.name.strip():
        raise BadRequest("Volume type name can not be empty.")
    if change.name is None and change.description is None and change.is_public is None:
        raise BadRequest(
            "Specify volume type name, description, is_public or a combination thereof."
        )
    ref = req.path_params["type_id"]

    def run() -> dict[str, Any]:
        with req.services.db.transaction() as session:
            vtype = session.get(VolumeType, ref, with_for_update=True)
            if vtype is None:
                raise type_not_found(ref)
            _keep_default_reachable(session, req.services.settings, vtype, change)
            if change.name is not None and change.name != vtype.name:
                taken = session.exec(select(VolumeType).where(VolumeType.name == change.name))
                if taken.first():
                    raise Conflict(f"Volume Type {change.name} already exists.")
                _rename_type_quotas(session, vtype.name, change.name)
                vtype.name = change.name
            if change.description is not None:
                vtype.description = change.description
            if change.is_public is not None:
                vtype.is_public = change.is_public
            vtype.updated_at = utcnow()
            session.flush()
            return type_view(req, vtype, _specs_of(session, [vtype])[vtype.id], mode="update")

    return JSONResponse({"volume_type": await run_in_threadpool(run)})


def _keep_default_reachable(
    session: Session, settings: Settings, vtype: VolumeType, change: TypeUpdate
) -> None:
    """400 for a rename or unpublishing of the default type: the default is found by its
    configured name and used by every project, so either would break creating without a type
    (Cinder then fails on each such request)."""
    if vtype.name != settings.default_volume_type:
        return
    renamed = change.name is not None and change.name != vtype.name
    if renamed or change.is_public is False:
        raise BadRequest(
            f"The volume type {vtype.id} is the default volume type "
            f"({settings.default_volume_type}): it cannot be renamed or made private."
        )


def _rename_type_quotas(session: Session, old: str, new: str) -> None:
    """Per-type quota resources are named after the type (`volumes_<name>`), as in Cinder."""
    for resource in PER_TYPE:
        session.exec(
            update(Quota)
            .where(Quota.resource == f"{resource}_{old}")
            .values(resource=f"{resource}_{new}")
        )


@router.route("DELETE", "/types/{type_id}", status=202)
async def delete_type(req: ApiRequest) -> Response:
    """Delete a type nobody uses (never the default or the last one)."""
    policy.authorize(req.ctx, "volume_extension:type_delete")
    ref = req.path_params["type_id"]

    def run() -> None:
        with req.services.db.transaction() as session:
            vtype = session.get(VolumeType, ref, with_for_update=True)
            if vtype is None:
                raise type_not_found(ref)
            if vtype.id == default_type(session, req.services.settings).id:
                raise BadRequest(
                    f"The volume type {vtype.id} is a default volume type and cannot be deleted."
                )
            if len(session.exec(select(VolumeType.id)).all()) <= 1:
                raise BadRequest(
                    f"The volume type {vtype.id} is the only currently defined volume type and "
                    "cannot be deleted."
                )
            if type_db.in_use(session, vtype.id):
                raise BadRequest("Target volume type is still in use.")
            for resource in PER_TYPE:
                session.exec(delete(Quota).where(Quota.resource == f"{resource}_{vtype.name}"))
            session.delete(vtype)

    await run_in_threadpool(run)
    return Response(status_code=202)


# Access to private types --------------------------------------------------------------------


@router.route("GET", "/types/{type_id}/os-volume-type-access", response=TypeAccessList)
async def access_list(req: ApiRequest) -> Response:
    """Projects a private type is shared with."""
    policy.authorize(req.ctx, "volume_extension:volume_type_access:get_all_for_type")
    ref = req.path_params["type_id"]

    def run() -> list[dict[str, str]]:
        with req.services.db.read() as session:
            vtype = session.get(VolumeType, ref)
            if vtype is None:
                raise type_not_found(ref)
            if vtype.is_public:
                raise NotFound("Access list not available for public volume types.")
            return [
                {"volume_type_id": vtype.id, "project_id": project}
                for project in type_db.projects_of(session, vtype.id)
            ]

    return JSONResponse({"volume_type_access": await run_in_threadpool(run)})


async def _change_access(req: ApiRequest, project: str, *, add: bool) -> Response:
    ref = req.path_params["type_id"]

    def run() -> None:
        with req.services.db.transaction() as session:
            vtype = session.get(VolumeType, ref)
            if vtype is None:
                raise type_not_found(ref)
            if vtype.is_public:
                raise BadRequest(
                    "Invalid volume type: Type access modification is not applicable to public "
                    "volume type."
                )
            existing = session.get(VolumeTypeProject, (vtype.id, project))
            pair = f"{vtype.id} / {project}"
            if add and existing:
                raise Conflict(f"Volume type access for {pair} combination already exists.")
            if not add and not existing:
                raise NotFound(f"Volume type access not found for {pair} combination.")
            if add:
                session.add(VolumeTypeProject(volume_type_id=vtype.id, project_id=project))
            else:
                session.delete(existing)

    await run_in_threadpool(run)
    return Response(status_code=202)


@router.action("/types/{type_id}/action", "addProjectAccess", body=AddProjectAccess)
async def add_project_access(req: ApiRequest) -> Response:
    """Share a private type with a project."""
    policy.authorize(req.ctx, "volume_extension:volume_type_access:addProjectAccess")
    assert isinstance(req.body, AddProjectAccess)
    return await _change_access(req, req.body.addProjectAccess.project, add=True)


@router.action("/types/{type_id}/action", "removeProjectAccess", body=RemoveProjectAccess)
async def remove_project_access(req: ApiRequest) -> Response:
    """Stop sharing a private type with a project."""
    policy.authorize(req.ctx, "volume_extension:volume_type_access:removeProjectAccess")
    assert isinstance(req.body, RemoveProjectAccess)
    return await _change_access(req, req.body.removeProjectAccess.project, add=False)
