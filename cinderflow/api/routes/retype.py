"""`POST /volumes/{id}/action` os-retype: Cinder's checks in Cinder's order (contract §3.3),
then, in one transaction, the new type's per-type quota reserved (keyed by the volume), the
volume compared-and-swapped `available|in-use -> retyping` and handed to RetypeVolume.
Admin os-migrate_volume moves a volume to another backend by the same workflow (same type).
os-migrate_volume_completion, the compute's answer to the swap of an attached volume, is a
thin call into that workflow's `complete_migration` update.

Later failures (no backend, a migration `never` allows, snapshots) are the workflow's: the
volume returns to its status with a user message, as in Cinder (there, without the message).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cinderflow import quota
from cinderflow.api import policy
from cinderflow.api.errors import (
    BadRequest,
    ServiceUnavailable,
    invalid_input,
    invalid_volume,
    volume_not_found,
    volume_type_not_found,
)
from cinderflow.api.handover import hand_over, operation_policy
from cinderflow.api.lookups import refuse_busy, visible_volume
from cinderflow.api.routes.attachments import Uuid
from cinderflow.api.routes.volume_actions import ACTIONS, COMPLETION_WAIT_S, router
from cinderflow.api.routes.volumes import NOT_MIGRATING
from cinderflow.api.routing import ApiRequest
from cinderflow.api.validation import Boolean, StrictModel
from cinderflow.db import migration_targets, ownership
from cinderflow.db import types as type_db
from cinderflow.db import volumes as volume_db
from cinderflow.db.models import OutboxEntry, Service, Snapshot, Volume, VolumeType
from cinderflow.payloads import MigrationCompleted, MigrationCompletion
from cinderflow.scheduling.backends import VOLUME_BINARY, reports_since
from cinderflow.settings import Settings
from cinderflow.status import MigrationStatus, VolumeStatus
from cinderflow.temporal.owner import OwnerGone, UpdateRefused
from cinderflow.temporal.queues import backend_of
from cinderflow.workflows.retype_volume import NOT_SWAPPING, RetypeInput, RetypeVolume

NOT_RETYPABLE = (
    "Retype needs volume to be in available or in-use state, not be part of an active "
    "migration or a consistency group, requested type has to be different that the one from "
    "the volume, and for in-use volumes front-end qos specs cannot change."
)
"""Cinder's message, word for word (its typo included): clients and tests match it."""
RETYPABLE = (VolumeStatus.AVAILABLE, VolumeStatus.IN_USE)


class Retype(StrictModel):
    new_type: str = Field(min_length=1, max_length=255)
    migration_policy: Literal["never", "on-demand"] | None = None


class RetypeBody(StrictModel):
    retype: Retype = Field(alias="os-retype")


@router.action(ACTIONS, "os-retype", body=RetypeBody)
async def retype(req: ApiRequest) -> Response:
    """Change a volume's type, in place or (`on-demand`) by migration."""
    assert isinstance(req.body, RetypeBody)
    body = req.body.retype

    def run() -> OutboxEntry:
        with req.services.db.transaction() as session:
            volume = visible_volume(session, req.ctx, req.path_params["volume_id"], for_update=True)
            policy.authorize(req.ctx, "volume:retype", volume.project_id)
            visible_to = None if req.ctx.is_admin else req.ctx.project_id
            new_type = type_db.find(session, body.new_type, project_id=visible_to)
            if new_type is None:
                raise volume_type_not_found(body.new_type)
            _check_type(session, volume, new_type)
            if volume_db.extra_specs(session, new_type.id).get("multiattach") == "<is> True":
                policy.authorize(req.ctx, "volume:multiattach", volume.project_id)
            settings = req.services.settings
            if new_type.id != volume.volume_type_id:  # else the status check below refuses
                quota.reserve(
                    session,
                    settings,
                    volume_id=volume.id,
                    project_id=volume.project_id,
                    deltas=_retype_deltas(session, settings, volume, new_type.name),
                )
            _check_retypable(session, volume, new_type)
            payload = RetypeInput(
                resource_id=volume.id,
                new_type_id=new_type.id,
                migration_policy=body.migration_policy or "never",
                previous_status=volume.status,
                completion_timeout_s=settings.migration_completion_timeout,
                policy=operation_policy(settings),
                request_id=req.ctx.request_id,
            )
            entry = hand_over(
                session,
                settings,
                "retype",
                volume,
                payload,
                status=VolumeStatus.RETYPING,
                expected={"status": volume.status},
            )
            assert entry is not None, "the row is locked and was checked above"
            return entry

    await req.services.outbox.start(await run_in_threadpool(run))
    return Response(status_code=202)


def _retype_deltas(
    session: Session, settings: Settings, volume: Volume, type_name: str
) -> dict[str, int]:
    """What the new type's per-type quota gains: the volume (Cinder's reservation) and its
    snapshots, which follow the volume's type here (unlike Cinder, LP#1877164)."""
    sizes = session.exec(
        select(Snapshot.volume_size).where(
            Snapshot.volume_id == volume.id, Snapshot.project_id == volume.project_id
        )
    ).all()
    gigabytes = volume.size + (0 if settings.no_snapshot_gb_quota else sum(sizes))
    deltas = {f"volumes_{type_name}": 1, f"gigabytes_{type_name}": gigabytes}
    if sizes:
        deltas[f"snapshots_{type_name}"] = len(sizes)
    return deltas


def _check_type(session: Session, volume: Volume, new_type: VolumeType) -> None:
    """What the new type itself forbids (Cinder's checks before the quota)."""
    specs = volume_db.extra_specs(session, new_type.id)
    multiattach = specs.get("multiattach") == "<is> True"
    if multiattach != volume.multiattach and volume.status != VolumeStatus.AVAILABLE:
        raise invalid_input(
            "Invalid volume_type passed, retypes affecting multiattach are only allowed on "
            "available volumes, the given volume has a status of: " + volume.status + "."
        )
    if multiattach and type_db.encryption_of(session, new_type.id) is not None:
        raise invalid_input(
            "Retype requested both encryption and multi-attach, which is not supported."
        )
    low, high = specs.get("provisioning:min_vol_size"), specs.get("provisioning:max_vol_size")
    if low and low.isdigit() and volume.size < int(low):
        raise invalid_input(
            f"Specified volume size of {volume.size} is less than the minimum "
            f"required size of {low} for volume type {new_type.name}."
        )
    if high and high.isdigit() and volume.size > int(high):
        raise invalid_input(
            f"Specified volume size of {volume.size} is greater than the maximum "
            f"allowable size of {high} for volume type {new_type.name}."
        )


def _check_retypable(session: Session, volume: Volume, new_type: VolumeType) -> None:
    """Cinder's compare-and-swap condition, checked on the locked row, with its one message;
    a retypable volume that an operation owns or holds is busy (409), as for extend."""
    migrating = volume.migration_status not in (None, *NOT_MIGRATING)
    if volume.status not in RETYPABLE or migrating or new_type.id == volume.volume_type_id:
        raise invalid_volume(NOT_RETYPABLE)
    refuse_busy(session, volume, "retype")


class Migrate(StrictModel):
    host: str = Field(min_length=1, max_length=255)
    force_host_copy: Boolean | None = None
    lock_volume: Boolean | None = None


class MigrateBody(StrictModel):
    migrate: Migrate = Field(alias="os-migrate_volume")


@router.action(ACTIONS, "os-migrate_volume", body=MigrateBody)
async def migrate_volume(req: ApiRequest) -> Response:
    """An administrator moves a volume to another backend (same type), by the retype's
    migration. `lock_volume` shows it `maintenance` meanwhile; either way the migration owns
    it, so other changes are refused (busy) until it ends. The file driver has no
    driver-assisted migration, so `force_host_copy` changes nothing."""
    assert isinstance(req.body, MigrateBody)
    body = req.body.migrate
    policy.authorize(req.ctx, "volume_extension:volume_admin_actions:migrate_volume")

    def run() -> OutboxEntry:
        with req.services.db.transaction() as session:
            volume = visible_volume(session, req.ctx, req.path_params["volume_id"], for_update=True)
            settings = req.services.settings
            _check_migratable(session, settings, volume, body.host)
            payload = RetypeInput(
                resource_id=volume.id,
                new_type_id=volume.volume_type_id,
                migration_policy="on-demand",
                previous_status=volume.status,
                completion_timeout_s=settings.migration_completion_timeout,
                host=body.host,
                policy=operation_policy(settings),
                request_id=req.ctx.request_id,
            )
            entry = hand_over(
                session,
                settings,
                "migrate",
                volume,
                payload,
                status=(
                    VolumeStatus.MAINTENANCE
                    if body.lock_volume and volume.status == VolumeStatus.AVAILABLE
                    else None
                ),
                expected={"status": volume.status},
            )
            assert entry is not None, "the row is locked and was checked above"
            return entry

    await req.services.outbox.start(await run_in_threadpool(run))
    return Response(status_code=202)


def _check_migratable(session: Session, settings: Settings, volume: Volume, host: str) -> None:
    """Cinder's checks of `API.migrate_volume`: the backend first (an enabled volume service
    that is up), then its one condition with its one message; a volume that an operation owns
    or holds is busy (409)."""
    service = session.exec(
        select(Service).where(Service.host == backend_of(host), Service.binary == VOLUME_BINARY)
    ).first()
    up_since = reports_since(settings.service_down_time)
    if (
        service is None
        or service.disabled
        or service.updated_at is None
        or service.updated_at < up_since
    ):
        raise BadRequest(f"Invalid host: No available service named {host}")
    snapshots = session.exec(select(Snapshot.id).where(Snapshot.volume_id == volume.id)).first()
    if (
        volume.status not in RETYPABLE
        or volume.migration_status not in (None, *NOT_MIGRATING)
        or snapshots is not None
        or (volume.host is not None and backend_of(host) == backend_of(volume.host))
    ):
        raise invalid_volume(
            f"Volume {volume.id} status must be available or in-use, must not be migrating, "
            "have snapshots, be replicated, be part of a group and destination host/cluster "
            "must be different than the current one"
        )
    refuse_busy(session, volume, "migrate")


class MigrationCompletionFields(StrictModel):
    new_volume: Uuid
    error: Boolean | None = None


class SavedVolume(BaseModel):
    save_volume_id: str
    """The id the compute keeps using (the source's)."""


class MigrationCompletionBody(StrictModel):
    completion: MigrationCompletionFields = Field(alias="os-migrate_volume_completion")


@router.action(
    ACTIONS,
    "os-migrate_volume_completion",
    body=MigrationCompletionBody,
    status=200,
    response=SavedVolume,
)
async def migrate_volume_completion(req: ApiRequest) -> Response:
    """The compute swapped (or failed to swap) an attached volume's disk to the migration's
    target: 200 `{"save_volume_id": id}`, the id the compute keeps (the source's)."""
    assert isinstance(req.body, MigrationCompletionBody)
    fields = req.body.completion
    policy.authorize(req.ctx, "volume_extension:volume_admin_actions:migrate_volume_completion")

    def waiting_workflow() -> str | None:
        """The migration's workflow, or None when it already exchanged the volumes (a repeat
        of a completion that was answered, or that timed out here while it was written)."""
        with req.services.db.read() as session:
            # Authorized above (admin or service role): the compute's service account.
            volume = session.get(Volume, req.path_params["volume_id"])
            if volume is None:
                raise volume_not_found(req.path_params["volume_id"])
            target = session.get(Volume, fields.new_volume)
            if target is None:
                raise volume_not_found(fields.new_volume)
            if (
                not fields.error
                and volume.migration_status == MigrationStatus.SUCCESS
                and target.migration_status == migration_targets.DELETING
                and any(h.holder_id == volume.id for h in ownership.holds_on(session, target.id))
            ):
                return None
            if volume.migration_status != MigrationStatus.MIGRATING or volume.workflow_id is None:
                raise invalid_volume(NOT_SWAPPING)
            expected = migration_targets.target_status(volume.id)
            if target.migration_status != expected:
                raise invalid_volume(
                    f"Destination has migration_status {target.migration_status}, expected "
                    f"{expected}."
                )
            return volume.workflow_id

    workflow_id = await run_in_threadpool(waiting_workflow)
    if workflow_id is None:
        return JSONResponse({"save_volume_id": req.path_params["volume_id"]})
    try:
        done = await req.services.owners.update(
            workflow_id,
            RetypeVolume.complete_migration,
            MigrationCompletion(new_volume=fields.new_volume, error=bool(fields.error)),
            wait=COMPLETION_WAIT_S,
            result_type=MigrationCompleted,
        )
    except (UpdateRefused, OwnerGone) as refused:
        raise invalid_volume(str(refused) or NOT_SWAPPING) from None
    if done is None:
        raise ServiceUnavailable(
            "The completion was taken but not finished in time (is a worker running?); send "
            "it again."
        )
    return JSONResponse({"save_volume_id": done.save_volume_id})
