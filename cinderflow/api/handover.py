"""The one way the API hands a resource to an operation's workflow.

In the request's transaction: compare-and-swap the row to its transient status with the
workflow as owner (or add the new row owned by it), record what the operation reads (holds), and
add the outbox entry that names the workflow, the operation's record (who asked, for the
operations API) and the request's idempotency key, if it sent one. After commit the API starts
it (or the sweeper does, temporal/outbox.py). If the compare-and-swap loses, nothing is
written and the caller re-reads the row to say why, in Cinder's words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement
from sqlmodel import Session

from cinderflow.api import idempotency
from cinderflow.api.context import CALLER
from cinderflow.api.errors import BadRequest
from cinderflow.db import operation_records, ownership
from cinderflow.db.models import OutboxEntry
from cinderflow.payloads import OperationPolicy
from cinderflow.settings import Settings
from cinderflow.status import ResourceKind
from cinderflow.temporal.converter import DATA_CONVERTER
from cinderflow.temporal.outbox import new_entry, workflow_id
from cinderflow.workflows.registry import OPERATIONS


def operation_policy(settings: Settings) -> OperationPolicy:
    """Timeouts and retries, fixed into the operation's input when it is requested."""
    return OperationPolicy(
        driver_heartbeat_timeout_s=settings.driver_heartbeat_timeout,
        driver_timeout_s=settings.driver_timeout,
        driver_max_attempts=settings.driver_max_attempts,
        driver_queue_timeout_s=settings.driver_queue_timeout,
    )


def check_carried(payload: BaseModel) -> None:
    """400 unless the operation's input survives Temporal's data converter both ways: a
    request the API takes must reach its workflow (an input the worker cannot decode would
    fail its workflow task again and again, leaving the resource owned and stuck)."""
    converter = DATA_CONVERTER.payload_converter
    try:
        converter.from_payloads(converter.to_payloads([payload]), [type(payload)])
    except Exception:  # any refusal of the converter's, whatever its kind
        raise BadRequest("Invalid input: the request cannot be carried to its operation.") from None


@dataclass(frozen=True)
class Read:
    """A resource the operation reads and holds unchanged until its end (a clone's source)."""

    resource: ResourceKind
    resource_id: str


def hand_over(
    session: Session,
    settings: Settings,
    operation: str,
    row: Any,
    payload: BaseModel,
    *,
    status: str | None = None,
    expected: Mapping[str, Any] | None = None,
    where: Iterable[ColumnElement[bool]] = (),
    values: Mapping[str, Any] | None = None,
    new: bool = False,
    reads: Sequence[Read] = (),
) -> OutboxEntry | None:
    """Give `row` to a new workflow of `operation`; its outbox entry, or None if the row is
    owned already or no longer matches `expected`/`where` (nothing written then).

    `status` is the transient status (the one before is kept in `previous_status`, what a
    cancel returns to); a `new` row is added as it is, owned by the workflow.
    """
    spec = OPERATIONS[operation]
    check_carried(payload)
    entry = new_entry(
        workflow_id=workflow_id(spec.resource, row.id, operation),
        workflow_type=spec.workflow_type,
        operation=operation,
        volume_id=row.id if spec.resource == ResourceKind.VOLUME else row.volume_id,
        project_id=row.project_id,
        task_queue=settings.control_task_queue,
        payload=payload,
        summary=spec.summary(row, payload),
    )
    if new:
        row.workflow_id = entry.workflow_id
        session.add(row)
    else:
        changes = dict(values or {})
        if hasattr(row, "previous_status"):
            changes["previous_status"] = row.status  # what a cancel returns to
        if status is not None:
            changes["status"] = status
        if not ownership.take(
            session,
            type(row),
            row.id,
            workflow_id=entry.workflow_id,
            expected=expected,
            values=changes,
            where=where,
        ):
            return None
    for read in reads:
        ownership.hold(
            session,
            resource_type=read.resource,
            resource_id=read.resource_id,
            workflow_id=entry.workflow_id,
            holder_id=row.id,
            operation=operation,
        )
    session.add(entry)
    caller = CALLER.get()
    operation_records.add(
        session,
        workflow_id=entry.workflow_id,
        operation=operation,
        resource_type=spec.resource,
        resource_id=row.id,
        volume_id=entry.volume_id,
        project_id=row.project_id,
        summary=entry.summary,
        caller_project_id=caller.project_id if caller and spec.shown_to_caller else None,
        user_id=caller.user_id if caller else None,
        request_id=caller.request_id if caller else getattr(payload, "request_id", None),
    )
    idempotency.claim(session, row.id)
    session.flush()
    return entry
