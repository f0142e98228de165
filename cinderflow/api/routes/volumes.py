"""`/volumes`: create, list, show, update, delete.

Create and delete only validate and commit a state change plus its outbox entry; the
CreateVolume/DeleteVolume workflows do the rest and write the final status.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from sqlalchemy import or_
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cinderflow import quota
from cinderflow.api import microversions as mv
from cinderflow.api import policy
from cinderflow.api.context import RequestContext
from cinderflow.api.errors import (
    BadRequest,
    NotFound,
    invalid_input,
    invalid_volume,
    volume_type_not_found,
)
from cinderflow.api.handover import Read, hand_over, operation_policy
from cinderflow.api.lookups import visible_snapshot, visible_volume
from cinderflow.api.params import boolean_param, dict_param, int_param, sort_param
from cinderflow.api.routes import images
from cinderflow.api.routes.metadata import MetadataResource, metadata_router
from cinderflow.api.routes.types import default_type
from cinderflow.api.routing import ApiRequest, Router
from cinderflow.api.schemas.volumes import (
    VolumeBody,
    VolumeCreate,
    VolumeCreateBody,
    VolumeList,
    VolumeUpdateBody,
)
from cinderflow.api.views import volumes as views
from cinderflow.db import admin_metadata, migration_targets, ownership
from cinderflow.db import snapshots as snapshot_db
from cinderflow.db import types as type_db
from cinderflow.db import volumes as volume_db
from cinderflow.db.engine import Database
from cinderflow.db.metadata import VOLUMES, set_metadata
from cinderflow.db.models import OutboxEntry, Service, Snapshot, Volume, VolumeType, utcnow
from cinderflow.db.paging import MarkerNotFound
from cinderflow.payloads import ImageSource, OperationProgress
from cinderflow.settings import Settings
from cinderflow.status import (
    AttachStatus,
    MigrationStatus,
    ResourceKind,
    SnapshotStatus,
    VolumeStatus,
)
from cinderflow.temporal.outbox import TemporalUnavailable, operation_of
from cinderflow.temporal.owner import OwnerGone, UpdateRefused
from cinderflow.workflows.create_volume import CreateVolumeInput
from cinderflow.workflows.delete_volume import DeleteVolumeInput

router = Router()

DELETABLE = (
    VolumeStatus.AVAILABLE,
    VolumeStatus.ERROR,
    VolumeStatus.ERROR_RESTORING,
    VolumeStatus.ERROR_EXTENDING,
    VolumeStatus.ERROR_MANAGING,
)
NOT_MIGRATING = ("deleting", MigrationStatus.ERROR, MigrationStatus.SUCCESS)
"""Migration statuses of a volume no migration holds (Cinder's temporary migration volumes
end in `deleting`, which is no reset target, so not a MigrationStatus member)."""
DELETE_REFUSED = (
    "Volume status must be available or error or error_restoring or error_extending or "
    "error_managing and must not be migrating, attached, belong to a group, have snapshots, "
    "awaiting a transfer, or be disassociated from snapshots after volume transfer."
)
UNSUPPORTED_SOURCES = {
    "backup_id": "a backup",
    "consistencygroup_id": "a consistency group",
    "group_id": "a group",
}


def volume_response(req: ApiRequest, view: views.VolumeView, status: int = 200) -> Response:
    return JSONResponse({"volume": views.detail(req, view)}, status_code=status)


# Create ------------------------------------------------------------------------------------


@router.route("POST", "/volumes", status=202, body=VolumeCreateBody, response=VolumeBody)
async def create(req: ApiRequest) -> Response:
    """Create a volume, empty or from a snapshot, another volume or an image; it is
    `creating` (from an image, then `downloading`) until its workflow makes it `available` or
    `error`."""
    policy.authorize(req.ctx, "volume:create", req.ctx.project_id)
    assert isinstance(req.body, VolumeCreateBody)
    spec = req.body.volume
    for field, source in UNSUPPORTED_SOURCES.items():
        if getattr(spec, field) is not None:
            raise invalid_input(f"creating a volume from {source} is not supported yet.")
    image_ref = spec.imageRef if spec.imageRef is not None else spec.image_id
    sources = [s for s in (spec.snapshot_id, spec.source_volid, image_ref) if s is not None]
    if len(sources) > 1:
        raise invalid_input("Only one of snapshot_id, source_volid and imageRef may be specified.")
    if spec.size is None and not sources:
        raise invalid_input(f"Volume size '{spec.size}' must be an integer and greater than 0")
    image = None
    if image_ref is not None:
        image = await images.read_image(req.services.settings, req.ctx, image_ref)
    view, entry = await run_in_threadpool(
        _insert, req.services.db, req.services.settings, req.ctx, spec, image
    )
    await req.services.failpoints.reach("api.create_volume.committed")
    await req.services.outbox.start(entry)
    return volume_response(req, view, 202)


@dataclass(frozen=True)
class Source:
    """What a new volume is copied from, and the defaults it takes from it."""

    snapshot_id: str | None
    source_volid: str | None
    size: int
    volume_type_id: str
    availability_zone: str
    bootable: bool
    what: str


def _source(session: Session, ctx: RequestContext, spec: VolumeCreate) -> Source | None:
    """The snapshot or volume to copy, locked until commit so it cannot be deleted meanwhile."""
    if spec.snapshot_id is not None:
        snapshot = visible_snapshot(session, ctx, spec.snapshot_id, for_update=True)
        if snapshot.status != SnapshotStatus.AVAILABLE:
            raise BadRequest(
                "Invalid snapshot: Originating snapshot status must be one of 'available' values"
            )
        origin = session.get(Volume, snapshot.volume_id)
        assert origin is not None
        return Source(
            snapshot.id,
            None,
            snapshot.volume_size,
            snapshot.volume_type_id,
            origin.availability_zone,
            origin.bootable,
            "snapshot",
        )
    if spec.source_volid is not None:
        volume = visible_volume(session, ctx, spec.source_volid, for_update=True)
        if volume.status not in (
            VolumeStatus.AVAILABLE,
            VolumeStatus.IN_USE,
        ) or migration_targets.is_target(volume):
            raise invalid_volume(
                "Unable to create a volume from an originating source volume when its status "
                f"is {volume.status}."
            )
        return Source(
            None,
            volume.id,
            volume.size,
            volume.volume_type_id,
            volume.availability_zone,
            volume.bootable,
            "source volume",
        )
    return None


def _insert(
    db: Database,
    settings: Settings,
    ctx: RequestContext,
    spec: VolumeCreate,
    image: tuple[ImageSource, dict[str, str]] | None = None,
) -> tuple[views.VolumeView, OutboxEntry]:
    with db.transaction() as session:
        source = _source(session, ctx, spec)
        if spec.size is not None:
            size = spec.size
        elif image is not None:
            size = images.default_size(image[0])
        else:
            size = source.size  # type: ignore[union-attr]
        if source is not None and size < source.size:
            what = "the snapshot size" if source.snapshot_id else "original volume size"
            raise invalid_input(
                f"Volume size '{size}'GB cannot be smaller than {what} {source.size}GB. They "
                f"must be >= original {'snapshot' if source.snapshot_id else 'volume'} size."
            )
        if source is not None and spec.volume_type is None:
            volume_type = session.get(VolumeType, source.volume_type_id)
            assert volume_type is not None
        else:
            volume_type = _resolve_type(session, ctx, settings, spec.volume_type)
        zone = _resolve_zone(session, settings, spec.availability_zone)
        if image is not None:
            encrypted = type_db.encryption_of(session, volume_type.id) is not None
            images.check_image(image[0], size, volume_type.name, encrypted)
        if source is not None and (
            type_db.encryption_of(session, source.volume_type_id) is None
        ) != (type_db.encryption_of(session, volume_type.id) is None):
            raise invalid_input(
                f"volume type {volume_type.name} must be encrypted exactly when the "
                f"{source.what}'s type is (change encryption with a retype)"
            )
        if source is not None:
            if spec.availability_zone is not None and zone != source.availability_zone:
                raise invalid_input(
                    f"Volume must be in the same availability zone as the {source.what}"
                )
            zone = source.availability_zone
        specs = volume_db.extra_specs(session, volume_type.id)
        quota.lock(session, ctx.project_id)
        quota.check(
            session,
            settings,
            ctx.project_id,
            quota.volume_deltas(size, volume_type.name),
            volume_size=size,
        )
        volume = Volume(
            id=str(uuid.uuid4()),
            project_id=ctx.project_id,
            user_id=ctx.user_id,
            name=spec.name if spec.name is not None else spec.display_name,
            description=spec.description
            if spec.description is not None
            else spec.display_description,
            size=size,
            status=VolumeStatus.CREATING,
            availability_zone=zone,
            volume_type_id=volume_type.id,
            multiattach=bool(spec.multiattach) or specs.get("multiattach") == "<is> True",
            snapshot_id=source.snapshot_id if source else None,
            source_volid=source.source_volid if source else None,
            bootable=source.bootable if source else False,
        )
        reads = []
        if source is not None and source.snapshot_id:
            reads.append(Read(ResourceKind.SNAPSHOT, source.snapshot_id))
        elif source is not None and source.source_volid:
            reads.append(Read(ResourceKind.VOLUME, source.source_volid))
        payload = CreateVolumeInput(
            resource_id=volume.id,
            policy=operation_policy(settings),
            request_id=ctx.request_id,
            image=image[0] if image else None,
            identity=images.identity(ctx) if image else None,
        )
        entry = hand_over(session, settings, "create", volume, payload, new=True, reads=reads)
        assert entry is not None, "a new row is always handed over"
        if spec.metadata:
            set_metadata(session, VOLUMES, volume.id, spec.metadata, replace=True)
        if image is not None:
            volume_db.set_image_metadata(session, volume.id, image[1])
            if image[0].raw_luks and image[0].key_id:
                admin_metadata.put(
                    session, volume.id, {admin_metadata.SOURCE_IMAGE_KEY_ID: image[0].key_id}
                )
        shown = views.VolumeView(
            volume,
            dict(spec.metadata or {}),
            volume_type.name,
            image_metadata=image[1] if image else {},
            type_encrypted=type_db.encryption_of(session, volume_type.id) is not None,
        )
        return shown, entry


def _resolve_type(
    session: Session, req_ctx: RequestContext, settings: Settings, ref: str | None
) -> VolumeType:
    if ref is None:
        return default_type(session, settings)
    visible_to = None if req_ctx.is_admin else req_ctx.project_id
    found = type_db.find(session, ref, project_id=visible_to)
    if found is None:
        raise volume_type_not_found(ref)
    return found


def _resolve_zone(session: Session, settings: Settings, requested: str | None) -> str:
    if requested is None:
        return settings.storage_availability_zone
    zones = {settings.storage_availability_zone}
    zones.update(session.exec(select(Service.availability_zone)).all())
    if requested not in zones:
        raise BadRequest(f"Availability zone '{requested}' is invalid.")
    return requested


# Read --------------------------------------------------------------------------------------


@router.route("GET", "/volumes", response=VolumeList)
async def index(req: ApiRequest) -> Response:
    """List volumes (id, name, links)."""
    return await _list(req, detailed=False)


@router.route("GET", "/volumes/detail", response=VolumeList)
async def index_detail(req: ApiRequest) -> Response:
    """List volumes with details; filters name, status, metadata; limit/marker/sort."""
    return await _list(req, detailed=True)


async def _list(req: ApiRequest, *, detailed: bool) -> Response:
    policy.authorize(req.ctx, "volume:get_all")
    query = _list_query(req)
    want_count = req.at_least(mv.SUPPORT_COUNT_INFO) and boolean_param(req, "with_count")

    def run() -> Response:
        """Query, render and encode in a thread: a page of 1000 detailed volumes is CPU work
        that must not stall the event loop (shared with the worker in `cinderflow dev`)."""
        with req.services.db.read() as session:
            try:
                found = volume_db.list_volumes(session, query)
            except MarkerNotFound as missing:
                raise NotFound(f"Marker {missing} could not be found.") from None
            count = volume_db.count_volumes(session, query) if want_count else None
            loaded = views.load(session, found)
        body = views.collection(req, loaded, detailed=detailed, limit=query.limit or 0, count=count)
        return JSONResponse(body)

    return await run_in_threadpool(run)


LIST_FILTERS = frozenset(
    {
        "name",
        "display_name",
        "status",
        "metadata",
        "glance_metadata",
        "bootable",
        "availability_zone",
        "size",
    }
)
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


def _list_query(req: ApiRequest) -> volume_db.VolumeQuery:
    ctx = req.ctx
    unknown = sorted(set(req.query) - LIST_FILTERS - LIST_CONTROLS)
    if unknown and not ctx.is_admin:  # Cinder's reject_invalid_filters (admins are exempt)
        raise BadRequest(f"Invalid filters {','.join(unknown)} are found in query options.")
    project: str | None = ctx.project_id
    if boolean_param(req, "all_tenants") and policy.allowed(ctx, "volume:get_all_tenants"):
        project = req.query.get("project_id")  # None: every project
    max_limit = req.services.settings.osapi_max_limit
    limit = int_param(req, "limit")
    return volume_db.VolumeQuery(
        project_id=project,
        name=req.query.get("name", req.query.get("display_name")),
        status=req.query.get("status"),
        metadata=dict_param(req, "metadata"),
        image_metadata=dict_param(req, "glance_metadata")
        if req.at_least(mv.VOLUME_LIST_GLANCE_METADATA)
        else {},
        bootable=boolean_param(req, "bootable") if "bootable" in req.query else None,
        availability_zone=req.query.get("availability_zone"),
        size=int_param(req, "size"),
        sort=sort_param(req, volume_db.SORT_KEYS),
        limit=max_limit if limit is None else min(limit, max_limit),
        marker=req.query.get("marker"),
        offset=int_param(req, "offset") or 0,
    )


@router.route("GET", "/volumes/{volume_id}", response=VolumeBody)
async def show(req: ApiRequest) -> Response:
    """Show one volume."""

    def run() -> views.VolumeView:
        with req.services.db.read() as session:
            volume = visible_volume(session, req.ctx, req.path_params["volume_id"])
            return views.load(session, [volume])[0]

    view = await run_in_threadpool(run)
    body = views.detail(req, view)
    progress = await migration_progress(req, view.volume)
    if progress:
        body["migration_progress"] = progress
    return JSONResponse({"volume": body})


PROGRESS_WAIT_S = 2.0
"""How long a volume show waits for a migration's progress (no worker: the field is left out)."""


async def migration_progress(req: ApiRequest, volume: Volume) -> str | None:
    """How far a migration's copy is, in percent as a string (3.72, admin, only while
    `migrating`; spec migration-progress-in-volume-details), asked of the migration's
    workflow; None, so the field is left out, when there is no answer (no worker runs it)."""
    if not (
        req.at_least(mv.MIGRATION_PROGRESS)
        and req.allowed("volume_extension:volume_mig_status_attribute")
        and volume.migration_status == MigrationStatus.MIGRATING
        and volume.workflow_id
    ):
        return None
    try:
        progress = await asyncio.wait_for(
            req.services.owners.query(
                volume.workflow_id, "progress", result_type=OperationProgress
            ),
            PROGRESS_WAIT_S,
        )
    except (UpdateRefused, OwnerGone, TemporalUnavailable, TimeoutError):
        return None
    return str(progress.percent) if progress.percent is not None else None


# Update ------------------------------------------------------------------------------------


@router.route("PUT", "/volumes/{volume_id}", body=VolumeUpdateBody, response=VolumeBody)
async def update(req: ApiRequest) -> Response:
    """Rename, describe or replace the metadata of a volume."""
    assert isinstance(req.body, VolumeUpdateBody)
    spec = req.body.volume
    given = spec.model_fields_set

    def run() -> views.VolumeView:
        with req.services.db.transaction() as session:
            volume = visible_volume(session, req.ctx, req.path_params["volume_id"], for_update=True)
            policy.authorize(req.ctx, "volume:update", volume.project_id)
            if volume.status == "maintenance":
                raise invalid_volume("The volume cannot be updated during maintenance.")
            if "name" in given or "display_name" in given:
                volume.name = spec.name if "name" in given else spec.display_name
            if "description" in given or "display_description" in given:
                volume.description = (
                    spec.description if "description" in given else spec.display_description
                )
            if given & {"name", "display_name", "description", "display_description"}:
                volume.updated_at = utcnow()
            if spec.metadata is not None:
                set_metadata(session, VOLUMES, volume.id, spec.metadata, replace=True)
            session.flush()
            return views.load(session, [volume])[0]

    return volume_response(req, await run_in_threadpool(run))


# Delete ------------------------------------------------------------------------------------


@router.route("DELETE", "/volumes/{volume_id}", status=202)
async def delete(req: ApiRequest) -> Response:
    """Delete a volume (202; it is `deleting` until its workflow removes it)."""
    cascade = boolean_param(req, "cascade")
    force = req.at_least(mv.VOLUME_DELETE_FORCE) and boolean_param(req, "force")
    entry = await run_in_threadpool(_mark_deleting, req, force, cascade)
    await req.services.failpoints.reach("api.delete_volume.committed")
    await req.services.outbox.start(entry)
    return Response(status_code=202)


def _mark_deleting(req: ApiRequest, force: bool, cascade: bool) -> OutboxEntry:
    """Hand the volume (and, cascading, its snapshots) to a DeleteVolume workflow."""
    volume_id = req.path_params["volume_id"]
    settings = req.services.settings
    with req.services.db.transaction() as session:
        volume = visible_volume(session, req.ctx, volume_id, for_update=True)
        policy.authorize(req.ctx, "volume:delete", volume.project_id)
        if force:
            policy.authorize(req.ctx, "volume:force_delete", volume.project_id)
        conditions = [
            Volume.attach_status != AttachStatus.ATTACHED,
            or_(Volume.migration_status.is_(None), Volume.migration_status.in_(NOT_MIGRATING)),
            ownership.not_held(Volume.id),
        ]
        if not cascade:
            conditions.append(~select(Snapshot.id).where(Snapshot.volume_id == Volume.id).exists())
        else:  # snapshots left in another project by a transfer are that project's
            conditions.append(
                ~select(Snapshot.id)
                .where(Snapshot.volume_id == Volume.id, Snapshot.project_id != Volume.project_id)
                .exists()
            )
        payload = DeleteVolumeInput(
            resource_id=volume.id,
            policy=operation_policy(settings),
            request_id=req.ctx.request_id,
            cascade=cascade,
        )
        entry = hand_over(
            session,
            settings,
            "delete",
            volume,
            payload,
            status=VolumeStatus.DELETING,
            expected={} if force else {"status": DELETABLE},
            where=conditions,
        )
        if entry is None:
            raise _delete_refused(session, volume, force)
        if cascade:
            # Locked first, so each compare-and-swap below is a new statement that sees the
            # holds of a volume being created from a snapshot (PostgreSQL's read committed).
            snapshots = session.exec(
                select(Snapshot).where(Snapshot.volume_id == volume_id).with_for_update()
            ).all()
            for snapshot in snapshots:
                if not snapshot_db.take_for_deletion(session, snapshot, entry.workflow_id):
                    raise invalid_volume(
                        f"Snapshot {snapshot.id} is {snapshot.status}: a cascading delete needs "
                        "every snapshot available or error and not in use."
                    )
        return entry


def _delete_refused(session: Session, volume: Volume, force: bool) -> BadRequest:
    session.refresh(volume)
    held = ownership.holds_on(session, volume.id)
    if held:
        return invalid_volume(f"Volume {volume.id} is busy: {ownership.hold_reason(held[0])}.")
    if force and volume.workflow_id is not None:
        return invalid_volume(
            f"Volume {volume.id} is busy: status {volume.status}, operation "
            f"{operation_of(volume.workflow_id)} is running. Wait for it to end, or reset the "
            "status."
        )
    return invalid_volume(DELETE_REFUSED)


def _volume_metadata_writable(volume: Volume) -> None:
    if volume.status == "maintenance":
        raise invalid_volume(
            "The volume metadata cannot be updated when the volume is in maintenance mode."
        )


metadata_routes = metadata_router(
    MetadataResource(
        base="/volumes/{volume_id}/metadata",
        param="volume_id",
        table=VOLUMES,
        load=lambda session, ctx, ident, lock: visible_volume(session, ctx, ident, for_update=lock),
        read_policy="volume:get_volume_metadata",
        create_policy="volume:create_volume_metadata",
        update_policy="volume:update_volume_metadata",
        delete_policy="volume:delete_volume_metadata",
        missing_key=lambda owner, key: "Metadata item was not found",
        writable=_volume_metadata_writable,
    )
)
router.include(metadata_routes)
