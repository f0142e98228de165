"""Operation records: what the operations API lists (api/routes/operations.py).

A record is written by the hand-over, in the transaction that gives the resource to its
workflow, so an operation the API answered 202 for is listed even before its workflow runs
(Temporal down: the outbox starts it later). The final write ends it in its own transaction,
so "succeeded" is never shown for an operation whose end did not commit, nor "running" for
one whose end did. Records are pruned `operation_retention` seconds after they ended.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, delete, or_, update
from sqlmodel import Session, select

from cinderflow.db.models import OperationRecord, utcnow
from cinderflow.status import OperationStatus

CLOSED_WITHOUT_END = {
    "COMPLETED": (
        OperationStatus.FAILED,
        "its workflow ended without its final write (the resource had another owner by then)",
    ),
    "FAILED": (OperationStatus.FAILED, "its workflow failed"),
    "TIMED_OUT": (OperationStatus.FAILED, "its workflow timed out"),
    "TERMINATED": (OperationStatus.FAILED, "its workflow was terminated"),
    "CANCELED": (OperationStatus.CANCELLED, None),
}
"""How an operation ended whose workflow closed without ending its record (by Temporal's
execution status name): only a crash, an operator's terminate or a lost ownership does."""
DETAIL_LIMIT = 2048
ENDED = "cinderflow.ended_operations"


def add(
    session: Session,
    *,
    workflow_id: str,
    operation: str,
    resource_type: str,
    resource_id: str,
    volume_id: str | None,
    project_id: str,
    summary: str,
    caller_project_id: str | None = None,
    user_id: str | None = None,
    request_id: str | None = None,
) -> OperationRecord:
    record = OperationRecord(
        id=str(uuid.uuid4()),
        workflow_id=workflow_id,
        operation=operation,
        resource_type=resource_type,
        resource_id=resource_id,
        volume_id=volume_id,
        project_id=project_id,
        caller_project_id=caller_project_id,
        user_id=user_id,
        request_id=request_id,
        summary=summary[:1024],
    )
    session.add(record)
    return record


def end(
    session: Session,
    workflow_id: str,
    status: str,
    detail: str | None,
    user_message: str | None = None,
    *,
    overrule: bool = False,
) -> bool:
    """Record how the operation of `workflow_id` ended; False if it had ended already (a
    retry of its final write, or no record: an operation from before records). `overrule`:
    the operator's write, which replaces what the orphan sweep may have recorded meanwhile
    (it terminated the workflow just before)."""
    # the operator's reset is what happened, whatever a sweep concluded
    still = [] if overrule else [OperationRecord.status.is_(None)]
    result = session.exec(
        update(OperationRecord)
        .where(OperationRecord.workflow_id == workflow_id, *still)
        .values(
            status=status,
            finished_at=utcnow(),
            detail=detail[:DETAIL_LIMIT] if detail else None,
            user_message=user_message[:255] if user_message else None,
        )
    )
    if not result.rowcount:
        return False
    ended = session.exec(
        select(OperationRecord).where(OperationRecord.workflow_id == workflow_id)
    ).one()
    session.info.setdefault(ENDED, []).append(ended)
    return True


def ended_in(session: Session) -> list[OperationRecord]:
    """The records this transaction ended (for the metrics, once it has committed)."""
    return list(session.info.get(ENDED, ()))


def unended(
    session: Session,
    created_before: datetime,
    limit: int,
    after: tuple[datetime, str] | None = None,
) -> list[OperationRecord]:
    """Records not ended yet, oldest first, after `after` (created_at, id): a page of the
    sweep that ends orphans."""
    stmt = select(OperationRecord).where(
        OperationRecord.status.is_(None), OperationRecord.created_at < created_before
    )
    if after is not None:
        moment, ident = after
        stmt = stmt.where(
            or_(
                OperationRecord.created_at > moment,
                and_(OperationRecord.created_at == moment, OperationRecord.id > ident),
            )
        )
    stmt = stmt.order_by(OperationRecord.created_at, OperationRecord.id).limit(limit)
    return list(session.exec(stmt))


def prune(session: Session, cutoff: datetime) -> int:
    """Remove the records of operations that ended before `cutoff`."""
    result = session.exec(
        delete(OperationRecord).where(
            OperationRecord.finished_at.is_not(None), OperationRecord.finished_at < cutoff
        )
    )
    return result.rowcount or 0
