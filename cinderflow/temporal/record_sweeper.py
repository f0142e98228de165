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
from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from cinderflow.db import operation_records
from cinderflow.db.engine import Database
from cinderflow.db.models import OperationRecord, OutboxEntry, utcnow
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
    ended."""
    records = await run_blocking(executor, _unended, db, grace)
    ended = 0
    for record in records:
        verdict = await _verdict(client, db, executor, record)
        if verdict is not None:
            status, detail = verdict
            if await run_blocking(executor, _end, db, record.workflow_id, status, detail):
                ended += 1
                log.info(
                    "operation %s (%s) ended as %s: %s",
                    record.id,
                    record.workflow_id,
                    status,
                    detail,
                )
    return ended


def _unended(db: Database, grace: timedelta) -> list[OperationRecord]:
    with db.read() as session:
        return operation_records.unended(session, utcnow() - grace, BATCH)


async def _verdict(
    client: Client, db: Database, executor: Executor | None, record: OperationRecord
) -> tuple[str, str | None] | None:
    try:
        described = await client.get_workflow_handle(record.workflow_id).describe()
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            return None  # Temporal unreachable: ask again next time
        if await run_blocking(executor, _pending_start, db, record.workflow_id):
            return None  # the outbox still starts it
        return operation_records.FAILED, "its workflow is gone (never started, or past retention)"
    if described.status is None or described.status in OPEN:
        return None
    return operation_records.CLOSED_WITHOUT_END.get(
        described.status.name, (operation_records.FAILED, "its workflow ended")
    )


def _pending_start(db: Database, workflow_id: str) -> bool:
    with db.read() as session:
        return session.get(OutboxEntry, workflow_id) is not None


def _end(db: Database, workflow_id: str, status: str, detail: str | None) -> bool:
    with db.transaction() as session:
        return operation_records.end(session, workflow_id, status, detail)
