"""Talking to the workflow that owns a resource: updates (a reset, an extend completion) and
queries (progress), with one account of what can go wrong.

Every failure is one of three exceptions, which the API turns into Cinder faults (api/app.py):

- `UpdateRefused`: the workflow refused (its validator or handler said why): 409 by default,
  or the route's own error (an extend completion that nobody waits for is a 400);
- `OwnerGone`: the workflow has ended, so it owns nothing any more (the caller re-reads);
- `TemporalUnavailable`: Temporal cannot be reached, or no worker took the message in time: 503.

Nothing here raises anything else from the Temporal client, so a lost race or an outage can never
surface as a 500.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import QueryRejectCondition
from temporalio.service import RPCError, RPCStatusCode

from cinderflow.temporal.outbox import TemporalUnavailable

ACCEPT_WAIT_S = 30.0
"""How long a message may wait for a worker to take it before the caller is told 503."""


class UpdateRefused(Exception):
    """The workflow refused the update; the message is its reason."""


class OwnerGone(Exception):
    """The workflow has ended (or was never started): it owns nothing now."""

    def __init__(self, message: str, closed_as: str | None = None) -> None:
        super().__init__(message)
        self.closed_as = closed_as
        """How it closed (Temporal's execution status name), where Temporal said so."""


def _cause(error: BaseException) -> str:
    cause = getattr(error, "cause", None)
    return str(getattr(cause, "message", None) or cause or error)


def _rpc(error: RPCError, workflow_id: str) -> Exception:
    if error.status == RPCStatusCode.NOT_FOUND or "already completed" in error.message:
        return OwnerGone("the operation has ended")
    if error.status == RPCStatusCode.RESOURCE_EXHAUSTED:  # Temporal's in-flight update limit
        return UpdateRefused("too many requests to this operation are in flight; try again")
    return TemporalUnavailable(
        f"Temporal did not take the request ({error.message}); nothing was changed, send it again"
    )


class OwnerClient:
    def __init__(self, client: Client) -> None:
        self.client = client
        self._in_flight: set[tuple[str, str]] = set()
        """(workflow, update) pairs this process has in flight: a second one is refused at
        once (the workflow would refuse it too), so that a storm of requests does not queue
        at Temporal's limit of ten updates in flight per workflow."""

    async def update(
        self,
        workflow_id: str,
        update: Any,
        arg: Any,
        *,
        wait: float,
        result_type: type | None = None,
    ) -> Any | None:
        """Deliver an update and wait up to `wait` seconds for its result; None when it was
        accepted and is still running (its outcome comes later)."""
        key = (workflow_id, getattr(update, "__name__", str(update)))
        if key in self._in_flight:
            raise UpdateRefused(f"another {key[1]} to this operation is in progress")
        self._in_flight.add(key)
        try:
            return await self._update(workflow_id, update, arg, wait=wait, result_type=result_type)
        except RuntimeError as error:  # a lazy client that cannot connect (Temporal down)
            if isinstance(error, NotImplementedError | RecursionError):
                raise
            raise TemporalUnavailable(f"Temporal cannot be reached ({error})") from None
        finally:
            self._in_flight.discard(key)

    async def _update(
        self, workflow_id: str, update: Any, arg: Any, *, wait: float, result_type: type | None
    ) -> Any | None:
        handle = self.client.get_workflow_handle(workflow_id)
        try:
            running = await asyncio.wait_for(
                handle.start_update(
                    update,
                    arg,
                    wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                    result_type=result_type,
                ),
                ACCEPT_WAIT_S,
            )
        except WorkflowUpdateFailedError as failed:
            raise UpdateRefused(_cause(failed)) from None
        except RPCError as rpc:
            raise _rpc(rpc, workflow_id) from None
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            raise TemporalUnavailable(
                f"no worker took the message for the operation within "
                f"{ACCEPT_WAIT_S:.0f} s (is a worker running?); it may still take effect when "
                "one does"
            ) from None
        try:
            return await asyncio.wait_for(running.result(), wait)
        except WorkflowUpdateFailedError as failed:
            raise UpdateRefused(_cause(failed)) from None
        except RPCError as rpc:
            raise _rpc(rpc, workflow_id) from None
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            return None

    async def query(
        self,
        workflow_id: str,
        query: Any,
        *,
        result_type: type | None = None,
        open_only: bool = False,
        timeout: float = ACCEPT_WAIT_S,
    ) -> Any:
        """A query's answer (a running or ended workflow). `open_only`: a closed workflow is
        not replayed to answer; it is OwnerGone with how it closed."""
        handle = self.client.get_workflow_handle(workflow_id)
        reject = QueryRejectCondition.NOT_OPEN if open_only else None
        try:
            return await asyncio.wait_for(
                handle.query(query, result_type=result_type, reject_condition=reject), timeout
            )
        except WorkflowQueryRejectedError as rejected:
            closed_as = rejected.status.name if rejected.status is not None else "CLOSED"
            raise OwnerGone("the operation has ended", closed_as=closed_as) from None
        except WorkflowQueryFailedError as failed:
            raise UpdateRefused(str(failed)) from None
        except RPCError as rpc:
            raise _rpc(rpc, workflow_id) from None
        except TimeoutError:
            raise TemporalUnavailable("the operation did not answer in time") from None
        except RuntimeError as error:  # a lazy client that cannot connect (Temporal down)
            if isinstance(error, NotImplementedError | RecursionError):
                raise
            raise TemporalUnavailable(f"Temporal cannot be reached ({error})") from None
