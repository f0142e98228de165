"""`os-reset_status` for volumes and snapshots (admin), after the tables in reset_rules.py.

A volume reset is never a bare database write. Nobody owns the volume: the API hands it to a
short ResetVolume workflow that asks the driver first. An operation owns it: the reset goes to
that operation's workflow as its `reset_status` update (workflows/operation.py). If the owner
ends while the reset is on its way, the API looks again (the volume may be free now). Either
way the API waits up to `reset_wait_timeout` seconds so the admin sees the real outcome (202
done, 400 refused with the driver's error); past that it answers 202 and the outcome lands as
a user message. A second reset while one runs is 409; Temporal unreachable is 503.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from temporalio.client import WorkflowFailureError

from cinderflow import reset_rules
from cinderflow.api import policy
from cinderflow.api.errors import BadRequest, Conflict, ServiceUnavailable, invalid_volume
from cinderflow.api.handover import hand_over, operation_policy
from cinderflow.api.lookups import visible_snapshot, visible_volume
from cinderflow.api.routing import ApiRequest, Router
from cinderflow.api.validation import Boolean, NotNull, StrictModel
from cinderflow.db import attachments as attachment_db
from cinderflow.db.cas import compare_and_swap
from cinderflow.db.models import OutboxEntry, Snapshot, Volume
from cinderflow.payloads import OperationOutcome, ResetOutcome, ResetRequest
from cinderflow.status import ResourceKind
from cinderflow.temporal.outbox import TemporalUnavailable, operation_of
from cinderflow.temporal.owner import OwnerGone, UpdateRefused
from cinderflow.workflows.operation import LOST, OperationWorkflow

router = Router()
DELIVERY_ATTEMPTS = 3
"""How often a reset looks for the volume's owner again when the one it found has just ended."""


def _one_of(values: tuple[str, ...], refused: Mapping[str, str] = MappingProxyType({})) -> Any:
    """The values a reset takes (case-insensitively; Cinder's, less those cinderflow refuses
    as targets), as the schema's enum."""
    taken: list[str | None] = [str(v) for v in values if str(v) not in refused]
    return Field(default=None, json_schema_extra={"enum": [*taken, None]})


class VolumeReset(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string"}}}
                for name in ("status", "attach_status", "migration_status")
            ]
        }
    )

    status: str | None = _one_of(reset_rules.VOLUME_STATUSES, reset_rules.VOLUME_REFUSED)
    """null means "not given", as in Cinder's schema (`['string', 'null']`)."""
    attach_status: str | None = _one_of(reset_rules.ATTACH_STATUSES)
    migration_status: str | None = _one_of(reset_rules.MIGRATION_STATUSES)
    force: Annotated[Boolean | SkipJsonSchema[None], NotNull] = None
    """cinderflow's extension: reset even if the driver fails (its error is reported)."""


class VolumeResetBody(StrictModel):
    reset: VolumeReset = Field(alias="os-reset_status")


class SnapshotReset(StrictModel):
    status: str = Field(
        json_schema_extra={
            "enum": [
                str(v)
                for v in reset_rules.SNAPSHOT_STATUSES
                if v not in reset_rules.SNAPSHOT_REFUSED
            ]
        }
    )


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
    volume_id = req.path_params["volume_id"]
    outcome = await _reset(req, volume_id, reset, bool(body.force))
    if outcome is not None and outcome.lost:
        raise Conflict(
            f"Volume {volume_id} was taken over while the reset ran (by the operator's "
            "cinderflow manage reset-state); this reset wrote nothing."
        )
    if outcome is not None and not outcome.done:
        raise invalid_volume(
            f"Reset refused: the driver could not make the backend match: {outcome.detail}. "
            "Fix the backend, or reset with force to write the status anyway."
        )
    return Response(status_code=202)


async def _reset(
    req: ApiRequest, volume_id: str, reset: reset_rules.VolumeReset, force: bool
) -> ResetOutcome | None:
    """Hand the reset to a ResetVolume workflow or deliver it to the owner, looking again when
    the owner ends while the reset is on its way."""
    owner = None
    for _ in range(DELIVERY_ATTEMPTS):
        prepared = await run_in_threadpool(_prepare, req, reset, force)
        if isinstance(prepared, OutboxEntry):
            outcome = await _run_reset_workflow(req, prepared)
        else:
            owner = prepared[0]
            outcome = await _deliver(req, *prepared)
        if outcome is None or not outcome.ended:
            return outcome
    raise await _undeliverable(req, "volume", volume_id, owner)


def _prepare(
    req: ApiRequest, reset: reset_rules.VolumeReset, force: bool
) -> OutboxEntry | tuple[str, ResetRequest]:
    """Check the tables; hand an unowned volume to a ResetVolume workflow (committed with its
    outbox entry), or name the workflow that owns it."""
    settings = req.services.settings
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
            resource_id=volume.id,
            current_status=volume.status,
            status=reset_rules.target_status(volume.status, reset),
            attach_status=reset.attach_status,
            migration_status=reset.migration_status,
            force=force,
            request_id=req.ctx.request_id,
            policy=operation_policy(settings),
        )
        if volume.workflow_id is not None:
            return volume.workflow_id, request
        entry = hand_over(session, settings, "reset", volume, request)
        assert entry is not None, "the row is locked and was checked above"
        return entry


async def _run_reset_workflow(req: ApiRequest, entry: OutboxEntry) -> ResetOutcome | None:
    """The ResetVolume workflow's outcome, or None if it is still going (202)."""
    timeout = req.services.settings.reset_wait_timeout
    try:
        result = await req.services.outbox.start_and_wait(entry, timeout)
    except TimeoutError:
        return None
    except TemporalUnavailable:
        raise ServiceUnavailable(
            "The workflow service is unavailable. The reset is recorded and runs when it is "
            "back; its outcome will be a user message."
        ) from None
    except WorkflowFailureError as failed:
        raise ServiceUnavailable(f"The reset could not be carried out: {failed.cause}.") from None
    outcome = result if isinstance(result, OperationOutcome) else OperationOutcome(**result)
    lost = outcome.status == LOST
    return ResetOutcome(done=outcome.done and not lost, lost=lost, detail=outcome.detail or "")


async def _deliver(req: ApiRequest, workflow_id: str, request: ResetRequest) -> Any:
    """Deliver the reset to the workflow that owns the resource (its `reset_status` update);
    its outcome, None while it still runs, or ended=True if the owner has gone meanwhile."""
    try:
        return await req.services.owners.update(
            workflow_id,
            OperationWorkflow.reset_status,
            request,
            wait=req.services.settings.reset_wait_timeout,
            result_type=ResetOutcome,
        )
    except UpdateRefused as refused:
        raise Conflict(f"{request.resource_id} cannot be reset now: {refused}.") from None
    except OwnerGone:
        return ResetOutcome(done=False, ended=True)


@router.action("/snapshots/{snapshot_id}/action", "os-reset_status", body=SnapshotResetBody)
async def reset_snapshot(req: ApiRequest) -> Response:
    """Snapshots have nothing on the backend to change: the table is checked and the status
    written, unless an operation owns the snapshot: then the reset goes to it, and it stops
    and writes the reset itself."""
    assert isinstance(req.body, SnapshotResetBody)
    policy.authorize(req.ctx, "volume_extension:snapshot_admin_actions:reset_status")
    try:
        status = reset_rules.parse_snapshot_status(req.body.reset.status)
        reset_rules.check_snapshot_reset(status)
    except reset_rules.ResetRefused as refused:
        raise BadRequest(str(refused)) from None
    snapshot_id = req.path_params["snapshot_id"]

    def write() -> tuple[str, ResetRequest] | None:
        with req.services.db.transaction() as session:
            snapshot = visible_snapshot(session, req.ctx, snapshot_id, for_update=True)
            if snapshot.workflow_id is not None:
                return snapshot.workflow_id, ResetRequest(
                    resource=ResourceKind.SNAPSHOT,
                    resource_id=snapshot.id,
                    current_status=snapshot.status,
                    status=status,
                    request_id=req.ctx.request_id,
                    policy=operation_policy(req.services.settings),
                )
            compare_and_swap(
                session,
                Snapshot,
                snapshot.id,
                expected={"workflow_id": None},
                values={"status": status},
            )
            return None

    owner = None
    for _ in range(DELIVERY_ATTEMPTS):
        owned = await run_in_threadpool(write)
        if owned is None:
            return Response(status_code=202)
        owner = owned[0]
        outcome = await _deliver(req, *owned)
        if outcome is None or not outcome.ended:
            return Response(status_code=202)
    raise await _undeliverable(req, "snapshot", snapshot_id, owner)


async def _undeliverable(req: ApiRequest, kind: str, ident: str, owner: str | None) -> Exception:
    """The owner found each time had no running workflow: not started yet (its start waits in
    the outbox: 503, try again), or ended without releasing the row (only the operator can
    help: 409 naming the command)."""

    model = Volume if kind == "volume" else Snapshot

    def state() -> tuple[str | None, bool]:
        with req.services.db.read() as session:
            row = session.get(model, ident)
            current = row.workflow_id if row is not None else None
            return current, owner is not None and session.get(OutboxEntry, owner) is not None

    current, pending = await run_in_threadpool(state)
    if current != owner:
        return Conflict(
            f"{kind.title()} {ident} changed hands while the reset was on its way; reset again."
        )
    if pending:
        return ServiceUnavailable(
            f"Operation {operation_of(owner)} owns {kind} {ident} but has not started yet "
            "(the workflow service was unreachable); reset again shortly."
        )
    return Conflict(
        f"Operation {operation_of(owner)} owns {kind} {ident} but has ended without releasing "
        f"it; reset it with `cinderflow manage {kind} reset-state {ident} --state <status> "
        "--force`."
    )
