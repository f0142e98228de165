"""`/snapshots`: create and delete are durable workflows; reads, updates and metadata are here.

A snapshot belongs to its volume: creating one locks the volume row, and a volume with
snapshots cannot be deleted (unless cascading), so the two never race.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cinderflow import quota
from cinderflow.api import microversions as mv
from cinderflow.api import policy
from cinderflow.api.errors import BadRequest, NotFound, invalid_volume
from cinderflow.api.handover import Read, hand_over, operation_policy
from cinderflow.api.lookups import visible_snapshot, visible_volume
from cinderflow.api.params import boolean_param, dict_param, int_param, sort_param
from cinderflow.api.routes.metadata import MetadataResource, metadata_router
from cinderflow.api.routes.volumes import NOT_MIGRATING
from cinderflow.api.routing import ApiRequest, Router
from cinderflow.api.schemas.snapshots import (
    ForceDelete,
    SnapshotBody,
    SnapshotCreate,
    SnapshotCreateBody,
    SnapshotList,
    SnapshotUpdateBody,
)
from cinderflow.api.views import snapshots as views
from cinderflow.db import migration_targets, ownership, paging
from cinderflow.db import snapshots as snapshot_db
from cinderflow.db.metadata import SNAPSHOTS, set_metadata
from cinderflow.db.models import OutboxEntry, Snapshot, VolumeType, utcnow
from cinderflow.status import ResourceKind, SnapshotStatus, VolumeStatus
from cinderflow.temporal.outbox import operation_of
from cinderflow.workflows.delete_snapshot import SnapshotInput

router = Router()
SNAPSHOT_IN_USE_FLAG_MSG = (
    "Since microversion 3.66 the 'force' flag is invalid for this request.  For backward "
    "compatability, however, when the 'force' flag is passed with a value evaluating to True, "
    "it is silently ignored."
)
LIST_FILTERS = frozenset({"name", "status", "volume_id", "metadata"})
LIST_CONTROLS = frozenset(
    {
        "limit",
        "marker",
        "offset",
        "sort",
        "sort_key",
        "sort_dir",
        "with_count",
        "all_tenants",
        "project_id",
    }
)
SORT_KEYS = frozenset({"id", "name", "status", "created_at", "updated_at", "volume_id"})


def _one(req: ApiRequest, session: Session, snapshot: Snapshot, extended: bool) -> dict[str, Any]:
    return views.detail(
        req, snapshot, views.metadata(session, [snapshot])[snapshot.id], extended=extended
    )


# Create -------------------------------------------------------------------------------------


@router.route("POST", "/snapshots", status=202, body=SnapshotCreateBody, response=SnapshotBody)
async def create(req: ApiRequest) -> Response:
    """Snapshot a volume (202; `creating` until its workflow makes it available or error)."""
    assert isinstance(req.body, SnapshotCreateBody)
    spec = req.body.snapshot
    if req.at_least(mv.SNAPSHOT_IN_USE) and spec.force is False:
        raise BadRequest(SNAPSHOT_IN_USE_FLAG_MSG)
    allowed = (
        (VolumeStatus.AVAILABLE, VolumeStatus.IN_USE)
        if spec.force or req.at_least(mv.SNAPSHOT_IN_USE)
        else (VolumeStatus.AVAILABLE,)
    )

    def run() -> tuple[dict[str, Any], OutboxEntry]:
        settings = req.services.settings
        with req.services.db.transaction() as session:
            snapshot = _insert(req, session, spec, allowed)
            payload = SnapshotInput(
                resource_id=snapshot.id,
                policy=operation_policy(settings),
                request_id=req.ctx.request_id,
            )
            entry = hand_over(
                session,
                settings,
                "create_snapshot",
                snapshot,
                payload,
                new=True,
                reads=[Read(ResourceKind.VOLUME, snapshot.volume_id)],
            )
            assert entry is not None, "a new row is always handed over"
            set_metadata(session, SNAPSHOTS, snapshot.id, spec.metadata or {}, replace=True)
            return _one(req, session, snapshot, extended=False), entry

    view, entry = await run_in_threadpool(run)
    await req.services.outbox.start(entry)
    return JSONResponse({"snapshot": view}, status_code=202)


def _insert(
    req: ApiRequest, session: Session, spec: SnapshotCreate, allowed: tuple[str, ...]
) -> Snapshot:
    """Cinder's checks, in Cinder's order, then the quota, then the row."""
    ctx, settings = req.ctx, req.services.settings
    volume = visible_volume(session, ctx, spec.volume_id, for_update=True)
    policy.authorize(ctx, "volume:create_snapshot", volume.project_id)
    if volume.host is None:
        raise invalid_volume(
            "The snapshot cannot be created because volume has not been scheduled to any host."
        )
    if volume.status == VolumeStatus.MAINTENANCE:
        raise invalid_volume(
            "The snapshot cannot be created when the volume is in maintenance mode."
        )
    if volume.migration_status not in (None, *NOT_MIGRATING) or migration_targets.is_target(volume):
        raise invalid_volume("Snapshot cannot be created while volume is migrating.")
    if volume.status == VolumeStatus.ERROR:
        raise invalid_volume("The snapshot cannot be created when the volume is in error status.")
    if volume.status not in allowed:
        raise invalid_volume(
            f"Volume {volume.id} status must be {', '.join(allowed)}, but current status is: "
            f"{volume.status}."
        )
    type_name = session.get(VolumeType, volume.volume_type_id).name  # type: ignore[union-attr]
    deltas = {"snapshots": 1, f"snapshots_{type_name}": 1}
    if not settings.no_snapshot_gb_quota:
        deltas.update({"gigabytes": volume.size, f"gigabytes_{type_name}": volume.size})
    quota.lock(session, volume.project_id)
    quota.check(session, settings, volume.project_id, deltas)
    name = spec.name if spec.name is not None else spec.display_name
    description = spec.description if spec.description is not None else spec.display_description
    return Snapshot(
        id=str(uuid.uuid4()),
        volume_id=volume.id,
        project_id=volume.project_id,
        user_id=ctx.user_id,
        name=name.strip() if name else name,
        description=description.strip() if description else description,
        status=SnapshotStatus.CREATING,
        progress="0%",
        volume_size=volume.size,
        volume_type_id=volume.volume_type_id,
        encryption_key_id=volume.encryption_key_id,
    )


# Read ---------------------------------------------------------------------------------------


@router.route("GET", "/snapshots", response=SnapshotList)
async def index(req: ApiRequest) -> Response:
    """List snapshots (summary)."""
    return await _list(req, detailed=False)


@router.route("GET", "/snapshots/detail", response=SnapshotList)
async def index_detail(req: ApiRequest) -> Response:
    """List snapshots with details; filters name, status, volume_id, metadata."""
    return await _list(req, detailed=True)


async def _list(req: ApiRequest, *, detailed: bool) -> Response:
    ctx = req.ctx
    policy.authorize(ctx, "volume:get_all_snapshots", ctx.project_id)
    unknown = sorted(set(req.query) - LIST_FILTERS - LIST_CONTROLS)
    if unknown and not ctx.is_admin and req.at_least(mv.RESOURCE_FILTER):
        raise BadRequest(f"Invalid filters {','.join(unknown)} are found in query options.")
    project: str | None = ctx.project_id
    if boolean_param(req, "all_tenants") and ctx.is_admin:
        project = req.query.get("project_id")
    max_limit = req.services.settings.osapi_max_limit
    limit = int_param(req, "limit")
    page = paging.Page(
        sort=sort_param(req, SORT_KEYS),
        limit=max_limit if limit is None else min(limit, max_limit),
        marker=req.query.get("marker"),
        offset=int_param(req, "offset") or 0,
    )
    wanted_metadata = (
        dict_param(req, "metadata") if req.at_least(mv.SNAPSHOT_LIST_METADATA_FILTER) else {}
    )
    want_count = req.at_least(mv.SUPPORT_COUNT_INFO) and boolean_param(req, "with_count")

    def run() -> tuple[list[dict[str, Any]], int | None]:
        with req.services.db.read() as session:
            stmt = sa_select(Snapshot)
            if project is not None:
                stmt = stmt.where(Snapshot.project_id == project)
            for name in ("name", "status", "volume_id"):
                if name in req.query:
                    stmt = stmt.where(getattr(Snapshot, name) == req.query[name])
            for key, value in wanted_metadata.items():
                stmt = stmt.where(
                    select(SNAPSHOTS.model)
                    .where(
                        SNAPSHOTS.column() == Snapshot.id,
                        SNAPSHOTS.model.key == key,  # type: ignore[attr-defined]
                        SNAPSHOTS.model.value == value,  # type: ignore[attr-defined]
                    )
                    .exists()
                )
            try:
                rows = paging.page(
                    session,
                    Snapshot,
                    stmt,
                    page,
                    visible=lambda m: project is None or m.project_id == project,
                )
            except paging.MarkerNotFound as missing:
                raise NotFound(f"Marker {missing} could not be found.") from None
            meta = views.metadata(session, rows)
            found = [
                views.detail(req, r, meta[r.id], extended=True)
                if detailed
                else views.summary(r, meta[r.id])
                for r in rows
            ]
            return found, paging.count(session, stmt) if want_count else None

    found, count = await run_in_threadpool(run)
    body: dict[str, Any] = {"snapshots": found}
    if count is not None:
        body["count"] = count
    return JSONResponse(body)


@router.route("GET", "/snapshots/{snapshot_id}", response=SnapshotBody)
async def show(req: ApiRequest) -> Response:
    """One snapshot, with its project and progress."""

    def run() -> dict[str, Any]:
        with req.services.db.read() as session:
            snapshot = visible_snapshot(session, req.ctx, req.path_params["snapshot_id"])
            return _one(req, session, snapshot, extended=True)

    return JSONResponse({"snapshot": await run_in_threadpool(run)})


@router.route("PUT", "/snapshots/{snapshot_id}", body=SnapshotUpdateBody, response=SnapshotBody)
async def update(req: ApiRequest) -> Response:
    """Rename or describe a snapshot."""
    assert isinstance(req.body, SnapshotUpdateBody)
    change = req.body.snapshot
    given = change.model_fields_set

    def run() -> dict[str, Any]:
        with req.services.db.transaction() as session:
            snapshot = visible_snapshot(
                session, req.ctx, req.path_params["snapshot_id"], for_update=True
            )
            policy.authorize(req.ctx, "volume:update_snapshot", snapshot.project_id)
            if given & {"name", "display_name"}:
                name = change.name if "name" in given else change.display_name
                snapshot.name = name.strip() if name else name
            if given & {"description", "display_description"}:
                text = change.description if "description" in given else change.display_description
                snapshot.description = text.strip() if text else text
            snapshot.updated_at = utcnow()
            session.flush()
            return _one(req, session, snapshot, extended=False)

    return JSONResponse({"snapshot": await run_in_threadpool(run)})


# Delete -------------------------------------------------------------------------------------


@router.route("DELETE", "/snapshots/{snapshot_id}", status=202)
async def delete(req: ApiRequest) -> Response:
    """Delete a snapshot (202; `deleting` until its workflow removes it)."""
    return await _delete(req, force=False)


@router.action("/snapshots/{snapshot_id}/action", "os-force_delete", body=ForceDelete)
async def force_delete(req: ApiRequest) -> Response:
    """Delete a snapshot in any status no operation owns (admin)."""
    return await _delete(req, force=True)


async def _delete(req: ApiRequest, *, force: bool) -> Response:
    snapshot_id = req.path_params["snapshot_id"]

    def run() -> OutboxEntry:
        with req.services.db.transaction() as session:
            snapshot = visible_snapshot(session, req.ctx, snapshot_id, for_update=True)
            action = (
                "volume_extension:snapshot_admin_actions:force_delete"
                if force
                else "volume:delete_snapshot"
            )
            policy.authorize(req.ctx, action, snapshot.project_id)
            settings = req.services.settings
            payload = SnapshotInput(
                resource_id=snapshot.id,
                policy=operation_policy(settings),
                request_id=req.ctx.request_id,
            )
            expected, where = snapshot_db.deletable(force)
            entry = hand_over(
                session,
                settings,
                "delete_snapshot",
                snapshot,
                payload,
                status=SnapshotStatus.DELETING,
                expected=expected,
                where=where,
            )
            if entry is None:
                raise deletion_refused(session, snapshot, force=force)
            return entry

    entry = await run_in_threadpool(run)
    await req.services.outbox.start(entry)
    return Response(status_code=202)


def deletion_refused(session: Session, snapshot: Snapshot, *, force: bool) -> BadRequest:
    session.refresh(snapshot)
    held = ownership.holds_on(session, snapshot.id)
    if held:
        return BadRequest(
            f"Invalid snapshot: Snapshot {snapshot.id} is busy: {ownership.hold_reason(held[0])}."
        )
    if force and snapshot.workflow_id is not None:
        return BadRequest(
            f"Invalid snapshot: Snapshot {snapshot.id} is busy: status "
            f"{snapshot.status}, operation {operation_of(snapshot.workflow_id)} is running."
        )
    status = "" if force else "status must be available or error and"
    return BadRequest(f"Invalid snapshot: Snapshot {status} must not be part of a group.")


# Metadata -----------------------------------------------------------------------------------

router.include(
    metadata_router(
        MetadataResource(
            base="/snapshots/{snapshot_id}/metadata",
            param="snapshot_id",
            table=SNAPSHOTS,
            load=lambda session, ctx, ident, lock: visible_snapshot(
                session, ctx, ident, for_update=lock
            ),
            read_policy="volume:get_snapshot_metadata",
            create_policy="volume:update_snapshot_metadata",
            update_policy="volume:update_snapshot_metadata",
            delete_policy="volume:delete_snapshot_metadata",
            missing_key=lambda owner, key: f"Snapshot {owner} has no metadata with key {key}.",
        )
    )
)
