"""`os-reset_status` for volumes and snapshots (admin), after the tables in reset_rules.py.

A volume reset is never a bare database write. Nobody owns the volume: the API hands it to a
short ResetVolume workflow that asks the driver first. An operation owns it: the reset goes to
that operation's workflow as its `reset_status` update. Either way the API waits up to
`reset_wait_timeout` seconds so the admin sees the real outcome (202 done, 400 refused with the
driver's error); past that it answers 202 and the outcome lands as a user message.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.service import RPCError

from cinderflow import operations, reset_rules
from cinderflow.api import policy
from cinderflow.api.errors import BadRequest, Conflict, invalid_volume
from cinderflow.api.lookups import visible_snapshot, visible_volume
from cinderflow.api.routing import ApiRequest, Router
from cinderflow.api.validation import Boolean, StrictModel
from cinderflow.db import attachments as attachment_db
from cinderflow.db.cas import compare_and_swap
from cinderflow.db.models import OutboxEntry, Snapshot, Volume
from cinderflow.payloads import ResetOutcome, ResetRequest
from cinderflow.temporal.outbox import TemporalUnavailable

router = Router()


class VolumeReset(StrictModel):
    status: str | None = None
    attach_status: str | None = None
    migration_status: str | None = None
    force: Boolean | None = None
    """cinderflow's extension: reset even if the driver fails (its error is reported)."""


class VolumeResetBody(StrictModel):
    reset: VolumeReset = Field(alias="os-reset_status")


class SnapshotReset(StrictModel):
    status: str


class SnapshotResetBody(StrictModel):
    reset: SnapshotReset = Field(alias="os-reset_status")


@router.action("/volumes/{volume_id}/action", "os-reset_status", body=VolumeResetBody)
async def reset_volume(req: ApiRequest) -> Response:
    assert isinstance(req.body, VolumeResetBody)
    policy.authorize(req.ctx, "volume_extension:volume_admin_actions:reset_status")
    body = req.body.reset
    try:
        reset = reset_rules.parse_volume_reset(
            body.status, body.attach_status, body.migration_status
        )
    except reset_rules.ResetRefused as refused:
        raise BadRequest(str(refused)) from None
    prepared = await run_in_threadpool(_prepare, req, reset, bool(body.force))
    if isinstance(prepared, OutboxEntry):
        outcome = await _run_reset_workflow(req, prepared)
    else:
        outcome = await _reset_owner(req, *prepared)
    if outcome is not None and not outcome.done:
        raise invalid_volume(
            f"Reset refused: the driver could not make the backend match: {outcome.detail}. "
            "Fix the backend, or reset with force to write the status anyway."
        )
    return Response(status_code=202)


def _prepare(
    req: ApiRequest, reset: reset_rules.VolumeReset, force: bool
) -> OutboxEntry | tuple[str, ResetRequest]:
    """Check the tables; hand an unowned volume to a ResetVolume workflow (committed with its
    outbox entry), or name the workflow that owns it."""
    with req.services.db.transaction() as session:
        volume = visible_volume(session, req.ctx, req.path_params["volume_id"], for_update=True)
        attachments = attachment_db.live(session, volume.id)
        try:
            reset_rules.check_volume_reset(volume.status, reset, [a.id for a in attachments])
        except reset_rules.ResetRefused as refused:
            raise invalid_volume(str(refused)) from None
        busy = [a for a in attachments if a.workflow_id is not None]
        if reset.attach_status == "detached" and busy:
            raise Conflict(
                f"Attachment {busy[0].id} of volume {volume.id} is being connected or "
                "disconnected; reset again once that has finished."
            )
        request = ResetRequest(
            volume_id=volume.id,
            current_status=volume.status,
            status=reset_rules.target_status(volume.status, reset),
            attach_status=reset.attach_status,
            migration_status=reset.migration_status,
            force=force,
            request_id=req.ctx.request_id,
            policy=operations.policy(req.services.settings),
        )
        if volume.workflow_id is not None:
            return volume.workflow_id, request
        entry = operations.reset_volume(req.services.settings, volume, request)
        swapped = compare_and_swap(
            session,
            Volume,
            volume.id,
            expected={"workflow_id": None},
            values={"workflow_id": entry.workflow_id},
        )
        assert swapped, "the row is locked and was checked above"
        session.add(entry)
        return entry


async def _run_reset_workflow(req: ApiRequest, entry: OutboxEntry) -> ResetOutcome | None:
    """The ResetVolume workflow's outcome, or None if it is still going (202)."""
    timeout = req.services.settings.reset_wait_timeout
    try:
        result = await req.services.outbox.start_and_wait(entry, timeout)
    except (TimeoutError, TemporalUnavailable):
        return None
    return _outcome(result)


async def _reset_owner(
    req: ApiRequest, workflow_id: str, request: ResetRequest
) -> ResetOutcome | None:
    """Deliver the reset to the workflow that owns the volume (its `reset_status` update)."""
    handle = req.services.temporal.get_workflow_handle(workflow_id)
    try:
        update = await handle.start_update(
            "reset_status",
            request,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            result_type=ResetOutcome,
        )
    except WorkflowUpdateFailedError as failed:
        cause = getattr(failed.cause, "message", None) or str(failed)
        raise Conflict(f"Volume {request.volume_id} cannot be reset now: {cause}.") from None
    except RPCError as rpc:
        raise Conflict(
            f"Volume {request.volume_id} is busy with operation {workflow_id}, which cannot "
            f"take a reset ({rpc.message}); reset again once it has ended."
        ) from None
    try:
        return _outcome(
            await asyncio.wait_for(update.result(), req.services.settings.reset_wait_timeout)
        )
    except TimeoutError:
        return None


def _outcome(result: Any) -> ResetOutcome:
    return result if isinstance(result, ResetOutcome) else ResetOutcome.model_validate(result)


@router.action("/snapshots/{snapshot_id}/action", "os-reset_status", body=SnapshotResetBody)
async def reset_snapshot(req: ApiRequest) -> Response:
    """Snapshots have no connections to end: the table is checked and the status written,
    unless an operation owns the snapshot (then it alone writes the status: 409)."""
    assert isinstance(req.body, SnapshotResetBody)
    policy.authorize(req.ctx, "volume_extension:snapshot_admin_actions:reset_status")
    try:
        status = reset_rules.parse_snapshot_status(req.body.reset.status)
        reset_rules.check_snapshot_reset(status)
    except reset_rules.ResetRefused as refused:
        raise BadRequest(str(refused)) from None

    def write() -> None:
        with req.services.db.transaction() as session:
            snapshot = visible_snapshot(
                session, req.ctx, req.path_params["snapshot_id"], for_update=True
            )
            if snapshot.workflow_id is not None:
                raise Conflict(
                    f"Snapshot {snapshot.id} is {snapshot.status}: operation "
                    f"{snapshot.workflow_id} owns it; reset again once it has ended."
                )
            compare_and_swap(
                session,
                Snapshot,
                snapshot.id,
                expected={"workflow_id": None},
                values={"status": status},
            )

    await run_in_threadpool(write)
    return Response(status_code=202)
