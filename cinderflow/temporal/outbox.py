"""The workflow outbox: how a committed state change always gets its workflow.

The API writes an `OutboxEntry` in the same transaction as the change (new `creating` row, CAS to
`deleting`, ...), then starts the workflow and deletes the entry. If the API, the database or
Temporal fails in between, the entry stays and a worker's sweeper starts it later. Starting is
idempotent: the workflow id is fixed in the entry and started with REJECT_DUPLICATE, so a second
start (API and sweeper racing, or a start whose reply was lost) is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from concurrent.futures import Executor
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete
from sqlmodel import select
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from cinderflow import metrics
from cinderflow.db.engine import Database
from cinderflow.db.models import OutboxEntry, utcnow
from cinderflow.payloads import REQUEST_TIME_PLAN
from cinderflow.temporal import search_attributes
from cinderflow.threads import run_blocking

log = logging.getLogger(__name__)

START_RPC_TIMEOUT = timedelta(seconds=10)
PERMANENT_START_ERRORS = frozenset(
    {RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.NOT_FOUND}
)
"""Start failures a retry will not fix (e.g. unregistered search attributes): logged as errors."""


def workflow_id(kind: str, resource_id: str, operation: str) -> str:
    """`<kind>-<id>-<operation>-<token>`: derived from the resource, unique per request."""
    return f"{kind}-{resource_id}-{operation}-{secrets.token_hex(4)}"


def operation_of(workflow_id: str) -> str:
    """The operation a workflow id names (`retype`), for messages to users: the id itself is
    what it takes to signal or terminate the workflow, so it stays with operators (who find a
    volume's workflows by its `VolumeId` search attribute)."""
    parts = workflow_id.rsplit("-", 2)
    return parts[1] if len(parts) == 3 else "in progress"


def new_entry(
    *,
    workflow_id: str,
    workflow_type: str,
    operation: str,
    volume_id: str,
    project_id: str,
    task_queue: str,
    payload: BaseModel,
    summary: str,
) -> OutboxEntry:
    return OutboxEntry(
        workflow_id=workflow_id,
        workflow_type=workflow_type,
        task_queue=task_queue,
        input=payload.model_dump(mode="json"),
        operation=operation,
        volume_id=volume_id,
        project_id=project_id,
        summary=summary,
    )


class TemporalUnavailable(Exception):
    """Temporal cannot be reached now, or no worker answered in time (the API's 503). A
    workflow that could not be started stays in the outbox for the sweeper."""


class Outbox:
    def __init__(self, db: Database, client: Client, executor: Executor | None = None) -> None:
        self.db = db
        self.client = client
        self.executor = executor

    async def start(self, entry: OutboxEntry, late: bool = False) -> bool:
        """Start the entry's workflow (or find it started) and drop the entry.

        Returns False, leaving the entry for the sweeper, when Temporal cannot be reached.
        A `late` start (the sweeper's) leaves out the input's `plan`, what the API read when it
        handed the resource over: the workflow reads it afresh, fenced by its ownership.
        """
        arg = (
            {k: v for k, v in entry.input.items() if k != REQUEST_TIME_PLAN}
            if late
            else entry.input
        )
        try:
            await self.client.start_workflow(
                entry.workflow_type,
                arg,
                id=entry.workflow_id,
                task_queue=entry.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=search_attributes.for_operation(
                    entry.operation, entry.volume_id, entry.project_id
                ),
                static_summary=entry.summary or None,
                rpc_timeout=START_RPC_TIMEOUT,
                # The first workflow task comes back with the start's reply when a worker of
                # the queue shares this client (`cinderflow dev`, an API with a worker): one
                # round trip less. Without one the server dispatches it as usual.
                request_eager_start=True,
            )
            metrics.OPERATIONS_STARTED.labels(operation=entry.operation).inc()
        except WorkflowAlreadyStartedError:
            pass
        except RPCError as error:
            permanent = error.status in PERMANENT_START_ERRORS
            log.log(
                logging.ERROR if permanent else logging.WARNING,
                "could not start workflow %s (%s: %s); left for the sweeper",
                entry.workflow_id,
                error.status.name if error.status else "?",
                error.message,
            )
            return False
        except Exception:
            log.warning(
                "could not start workflow %s; left for the sweeper",
                entry.workflow_id,
                exc_info=True,
            )
            return False
        try:
            await run_blocking(self.executor, self._forget, entry.workflow_id)
        except Exception:
            log.warning(
                "workflow %s started; its outbox entry stays until the next sweep",
                entry.workflow_id,
                exc_info=True,
            )
        return True

    def _forget(self, workflow_id: str) -> None:
        with self.db.transaction() as session:
            session.exec(delete(OutboxEntry).where(OutboxEntry.workflow_id == workflow_id))

    async def start_and_wait(self, entry: OutboxEntry, timeout: float) -> Any:
        """Start the entry's workflow and wait for its result, for APIs that answer with it.

        Raises TemporalUnavailable if it could not be started (it will be, by the sweeper) or
        Temporal went away while we waited (it goes on), TimeoutError past `timeout` (it goes
        on), or WorkflowFailureError if it failed.
        """
        if not await self.start(entry):
            raise TemporalUnavailable(
                f"the {entry.operation} operation is recorded and will be started"
            )
        handle = self.client.get_workflow_handle(entry.workflow_id)
        try:
            return await asyncio.wait_for(handle.result(), timeout)
        except RPCError as error:
            raise TemporalUnavailable(
                f"the {entry.operation} operation was started, but the workflow service "
                f"went away while we waited for it ({error.message})"
            ) from None

    async def sweep(self, grace: timedelta) -> int:
        """Start every entry older than `grace`; returns how many were started."""
        pending = await run_blocking(self.executor, self._pending, utcnow() - grace)
        started = 0
        for entry in pending:
            if await self.start(entry, late=True):
                started += 1
                log.info("sweeper started %s (%s)", entry.workflow_id, entry.operation)
        return started

    def _pending(self, cutoff: datetime) -> list[OutboxEntry]:
        with self.db.read() as session:
            return list(
                session.exec(
                    select(OutboxEntry)
                    .where(OutboxEntry.created_at < cutoff)
                    .order_by(OutboxEntry.created_at)
                )
            )
