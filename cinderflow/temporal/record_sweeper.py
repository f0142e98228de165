"""Ending the records of operations whose workflow ended without ending them.

Every operation ends its record in its last transaction (the final write, an attachment's
end). A workflow that never got there (terminated by an operator, failed on a bug, or gone
from Temporal altogether with no outbox entry left to start it) would otherwise stay
`running` in the operations API and in the `cinderflow_operations_running`/`_stuck` gauges
for good, and never be pruned. The control worker asks Temporal about the oldest unended
records now and then (one describe per record, no history) and ends those it says are over.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from datetime import datetime, timedelta

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from cinderflow import metrics
from cinderflow.db import operation_records
from cinderflow.db.engine import Database
from cinderflow.db.models import OperationRecord, OutboxEntry, utcnow
from cinderflow.status import OperationStatus
from cinderflow.threads import run_blocking

log = logging.getLogger(__name__)
BATCH = 100
GRACE = timedelta(minutes=2)
"""A record younger than this is left alone (its workflow may not have started yet)."""
OPEN = {WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW}


async def end_orphans(
    client: Client, db: Database, executor: Executor | None, grace: timedelta = GRACE
) -> int:
    """End the records (older than `grace`) whose workflow is closed or gone; how many were
    ended. Every unended record is looked at, a page at a time, so a hundred long operations
    cannot hide an orphan behind them; one that cannot be judged is skipped, not fatal."""
    ended = 0
    after: tuple[datetime, str] | None = None
    while True:
        records = await run_blocking(executor, _unended, db, grace, after)
        for record in records:
            try:
                verdict = await _verdict(client, db, executor, record)
                if verdict is None:
                    continue
                status, detail = verdict
                finished = await run_blocking(
                    executor, _end, db, record.workflow_id, status, detail
                )
            except Exception:
                log.warning("cannot judge operation %s", record.workflow_id, exc_info=True)
                continue
            if finished:  # (empty: its own end came first)
                metrics.observe_finished(finished)
                ended += 1
                log.info(
                    "operation %s (%s) ended as %s: %s",
                    record.id,
                    record.workflow_id,
                    status,
                    detail,
                )
        if len(records) < BATCH:
            return ended
        after = (records[-1].created_at, records[-1].id)


def _unended(
    db: Database, grace: timedelta, after: tuple[datetime, str] | None
) -> list[OperationRecord]:
    with db.read() as session:
        return operation_records.unended(session, utcnow() - grace, BATCH, after)


async def _verdict(
    client: Client, db: Database, executor: Executor | None, record: OperationRecord
) -> tuple[str, str | None] | None:
    # The outbox first: an entry is deleted only once its workflow has started, so "no entry"
    # read before Temporal's "not found" means it will never start.
    pending = await run_blocking(executor, _pending_start, db, record.workflow_id)
    try:
        described = await client.get_workflow_handle(record.workflow_id).describe()
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND or pending:
            return None  # Temporal unreachable, or the outbox still starts it
        return OperationStatus.FAILED, "its workflow is gone (never started, or past retention)"
    if described.status is None or described.status in OPEN:
        return None
    return operation_records.CLOSED_WITHOUT_END.get(
        described.status.name, (OperationStatus.FAILED, "its workflow ended")
    )


def _pending_start(db: Database, workflow_id: str) -> bool:
    with db.read() as session:
        return session.get(OutboxEntry, workflow_id) is not None


def _end(db: Database, workflow_id: str, status: str, detail: str | None) -> list:
    with db.transaction() as session:
        operation_records.end(session, workflow_id, status, detail)
        return operation_records.ended_in(session)
