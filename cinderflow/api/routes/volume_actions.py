"""`POST /volumes/{id}/action`: os-extend and os-extend_volume_completion.

Extend checks and reserves here, in Cinder's order, then hands the volume to the ExtendVolume
workflow. The completion action is a thin call into that workflow's `complete_extend` update,
so it has exactly the meaning of an update sent to Temporal directly, and a completion for a
volume that is not waiting is refused synchronously.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from cinderflow import quota
from cinderflow.api import microversions as mv
from cinderflow.api import policy
from cinderflow.api.errors import (
    Conflict,
    ServiceUnavailable,
    invalid_input,
    invalid_volume,
    volume_not_found,
)
from cinderflow.api.handover import hand_over, operation_policy
from cinderflow.api.lookups import visible_volume
from cinderflow.api.routing import ApiRequest, Router
from cinderflow.api.validation import Boolean, PositiveInt, StrictModel
from cinderflow.db import admin_metadata, ownership
from cinderflow.db import volumes as volume_db
from cinderflow.db.models import OutboxEntry, Service, Volume, VolumeType
from cinderflow.payloads import ExtendCompletion
from cinderflow.scheduling.backends import extend_plan, reports_since
from cinderflow.status import VolumeStatus
from cinderflow.temporal.outbox import operation_of
from cinderflow.temporal.owner import OwnerGone, UpdateRefused
from cinderflow.temporal.queues import backend_of
from cinderflow.workflows.extend_volume import NOT_WAITING, ExtendInput, ExtendVolume

router = Router()
ACTIONS = "/volumes/{volume_id}/action"
COMPLETION_WAIT_S = 30.0
"""How long a completion waits for the workflow to take it (a worker must run it)."""


class NewSize(StrictModel):
    new_size: PositiveInt


class ExtendBody(StrictModel):
    extend: NewSize = Field(alias="os-extend")


class Completion(StrictModel):
    error: Boolean | None = None
    """Parsed as a boolean: "false" is false (Cinder treats any non-empty string as an error)."""


class CompletionBody(StrictModel):
    completion: Completion = Field(alias="os-extend_volume_completion")


@router.action(ACTIONS, "os-extend", body=ExtendBody)
async def extend(req: ApiRequest) -> Response:
    """Grow a volume: `available`, or `in-use` from 3.42 (online)."""
    assert isinstance(req.body, ExtendBody)
    new_size = req.body.extend.new_size

    def run() -> OutboxEntry:
        with req.services.db.transaction() as session:
            volume = visible_volume(session, req.ctx, req.path_params["volume_id"], for_update=True)
            online = volume.status == VolumeStatus.IN_USE and req.at_least(mv.VOLUME_EXTEND_INUSE)
            action = "volume:extend_attached_volume" if online else "volume:extend"
            policy.authorize(req.ctx, action, volume.project_id)
            _check_extend(session, volume, new_size, online)
            type_name = session.get(VolumeType, volume.volume_type_id).name  # type: ignore[union-attr]
            delta = new_size - volume.size
            settings = req.services.settings
            quota.reserve(
                session,
                settings,
                volume_id=volume.id,
                project_id=volume.project_id,
                deltas={"gigabytes": delta, f"gigabytes_{type_name}": delta},
                volume_size=new_size,
            )
            payload = ExtendInput(
                resource_id=volume.id,
                new_size=new_size,
                previous_status=volume.status,
                policy=operation_policy(settings),
                request_id=req.ctx.request_id,
                completion_timeout_s=settings.extend_completion_timeout,
                plan=extend_plan(
                    session, volume, new_size, online, reports_since(settings.service_down_time)
                ),
            )
            entry = hand_over(
                session,
                settings,
                "extend",
                volume,
                payload,
                status=VolumeStatus.EXTENDING,
                expected={"status": volume.status},
            )
            assert entry is not None, "the row is locked and was checked above"
            return entry

    await req.services.outbox.start(await run_in_threadpool(run))
    return Response(status_code=202)


def _check_extend(session: Session, volume: Volume, new_size: int, online: bool) -> None:
    """Cinder's checks in Cinder's order (contract §3.1), plus a fast refusal of online
    extends on backends that cannot do them (Cinder fails those asynchronously)."""
    if new_size <= volume.size:
        raise invalid_input(
            "New size for extend must be greater than current size. "
            f"(current: {volume.size}, extended: {new_size})."
        )
    specs = volume_db.extra_specs(session, volume.volume_type_id)
    type_name = session.get(VolumeType, volume.volume_type_id).name  # type: ignore[union-attr]
    low, high = specs.get("provisioning:min_vol_size"), specs.get("provisioning:max_vol_size")
    if low and low.isdigit() and new_size < int(low):
        raise invalid_input(
            f"Specified volume size of {new_size} is less than the minimum "
            f"required size of {low} for volume type {type_name}."
        )
    if high and high.isdigit() and new_size > int(high):
        raise invalid_input(
            f"Specified volume size of {new_size} is greater than the maximum "
            f"allowable size of {high} for volume type {type_name}."
        )
    expected = VolumeStatus.IN_USE if online else VolumeStatus.AVAILABLE
    if volume.workflow_id is not None and volume.status == expected:
        raise Conflict(
            f"Volume {volume.id} is busy: operation {operation_of(volume.workflow_id)} owns it; "
            "extend it once that has ended."
        )
    held = ownership.holds_on(session, volume.id)
    if held and volume.status == expected:
        raise Conflict(
            f"Volume {volume.id} is busy: {ownership.hold_reason(held[0])}; extend it once "
            "that has ended."
        )
    if volume.status != expected:
        raise invalid_volume(
            f"Volume {volume.id} status must be '{ {'status': expected} }' to extend, "
            f"currently {volume.status}."
        )
    if online:
        backend = _backend(session, volume)
        if not (backend.capabilities or {}).get("online_extend_support", True):
            raise invalid_volume(
                f"Volume {volume.id} is attached and its backend {backend.host} cannot extend "
                "attached volumes (online_extend_support is false); detach it first."
            )


def _backend(session: Session, volume: Volume) -> Service:
    """The service row of the volume's backend (its last reported capabilities)."""
    assert volume.host is not None
    found = session.exec(
        select(Service).where(
            Service.host == backend_of(volume.host), Service.binary == "cinder-volume"
        )
    ).first()
    if found is None:
        raise invalid_volume(f"Volume {volume.id}'s backend {volume.host} is not known.")
    return found


@router.action(
    ACTIONS, "os-extend_volume_completion", body=CompletionBody, since=mv.EXTEND_VOLUME_COMPLETION
)
async def extend_completion(req: ApiRequest) -> Response:
    """The compute finished (or failed) an online extend it was asked to do (admin/service)."""
    assert isinstance(req.body, CompletionBody)
    error = bool(req.body.completion.error)
    policy.authorize(req.ctx, "volume_extension:volume_admin_actions:extend_volume_completion")

    def waiting_workflow() -> str:
        with req.services.db.read() as session:
            # Authorized above (admin or service role): a compute's service account may
            # complete an extend in any project, as Nova does with its service token.
            volume = session.get(Volume, req.path_params["volume_id"])
            if volume is None:
                raise volume_not_found(req.path_params["volume_id"])
            if volume.status != VolumeStatus.EXTENDING or volume.workflow_id is None:
                raise invalid_volume(NOT_WAITING)
            _check_completion_keys(session, volume)
            return volume.workflow_id

    workflow_id = await run_in_threadpool(waiting_workflow)
    try:
        taken = await req.services.owners.update(
            workflow_id,
            ExtendVolume.complete_extend,
            ExtendCompletion(error=error),
            wait=COMPLETION_WAIT_S,
        )
    except (UpdateRefused, OwnerGone):
        raise invalid_volume(NOT_WAITING) from None
    if taken is None:
        raise ServiceUnavailable(
            "The completion was not taken in time (is a worker running?); send it again."
        )
    return Response(status_code=202)


def _check_completion_keys(session: Session, volume: Volume) -> None:
    """Cinder's checks of the admin metadata an online extend leaves for the compute."""
    keys: dict[str, Any] = volume_db.admin_metadata_of(session, volume.id)
    try:
        new_size = int(keys[admin_metadata.EXTEND_NEW_SIZE])
        reservations = json.loads(keys[admin_metadata.EXTEND_RESERVATIONS])
    except (KeyError, ValueError):
        raise invalid_volume("Required volume admin metadata is malformed or missing.") from None
    if new_size <= volume.size:
        raise invalid_volume(
            f"The target volume size provided in volume admin metadata {new_size} is smaller or "
            "equal to the current volume size."
        )
    if not isinstance(reservations, list):
        raise invalid_volume(
            "The volume admin metadata key extend_reservations must be in a list format."
        )
