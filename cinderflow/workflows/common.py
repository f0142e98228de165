"""Activity options and error helpers shared by the workflows (deterministic, no I/O)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutType
from temporalio.exceptions import TimeoutError as ActivityTimeout
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.fencing import LOST_OWNERSHIP
    from cinderflow.payloads import OperationPolicy
    from cinderflow.temporal.queues import backend_queue

T = TypeVar("T")
A = TypeVar("A")

LOCAL_CONTROL_STEPS = "local-control-steps"
"""The patch that made database steps local activities (workflows started before it run
them as regular activities on the control queue to their end; docs/design.md)."""

PLAN_IN_INPUT = "plan-in-input"
"""The patch under which an operation uses the plan its input carries (read by the API in the
hand-over's transaction) instead of reading it in a step. A worker from before it ran such a
workflow's first task with the read step; a newer worker replaying that history must too."""

CONTROL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,  # a database outage must delay an operation, never strand it
    non_retryable_error_types=[LOST_OWNERSHIP],
)


def control(summary: str | None = None) -> dict[str, Any]:
    """Options for a database step on the control queue (the workflow's own queue). A cut waits
    for the attempt in flight to end (it is short), so no step of the operation still writes
    when a reset looks."""
    return {
        "cancellation_type": ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        "start_to_close_timeout": timedelta(seconds=60),
        "retry_policy": CONTROL_RETRY,
        "summary": summary,
    }


LOCAL_ATTEMPTS_FOR = timedelta(minutes=2)
"""How long a database step retries as a local activity before it goes on as a regular one:
local retries each add workflow-task events to the history, a regular activity's retries add
none, so a long database outage cannot grow a history towards its limit."""


async def run_control(
    activity: Callable[[Any, A], Awaitable[T]], arg: A, summary: str | None = None
) -> T:
    """Run a database step (an activity of the control groups).

    A local activity: it runs on the worker that runs this workflow's task, inside that task,
    so a step costs no round trip through the server (a create is 2 workflow tasks and 1
    activity instead of 4 and 3). It is as durable: its result is recorded in the history
    when the task completes; if the worker dies first the task runs again, and with it the
    (idempotent, fenced) step. A step still failing after LOCAL_ATTEMPTS_FOR (the database is
    down) carries on as a regular activity on the control queue, retrying as long as it takes.
    Workflows that started before this patch schedule regular activities, so their histories
    replay.
    """
    if not workflow.patched(LOCAL_CONTROL_STEPS):
        return await workflow.execute_activity_method(activity, arg, **control(summary))
    try:
        return await workflow.execute_local_activity_method(
            activity, arg, schedule_to_close_timeout=LOCAL_ATTEMPTS_FOR, **control(summary)
        )
    except ActivityError as error:
        if not (
            isinstance(error.cause, ActivityTimeout)
            and error.cause.type == TimeoutType.SCHEDULE_TO_CLOSE
        ):
            raise
    return await workflow.execute_activity_method(activity, arg, **control(summary))


def driver(host: str, policy: OperationPolicy, summary: str | None = None) -> dict[str, Any]:
    """Options for a driver call on the volume's backend queue. A cut waits for the activity to
    confirm (a driver already running on the backend finishes first, activities/driver.py), so
    nothing of the operation runs on the backend when a reset looks at it."""
    return {
        "cancellation_type": ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        "task_queue": backend_queue(host),
        "schedule_to_start_timeout": timedelta(seconds=policy.driver_queue_timeout_s),
        "start_to_close_timeout": timedelta(seconds=policy.driver_timeout_s),
        "heartbeat_timeout": timedelta(seconds=policy.driver_heartbeat_timeout_s),
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(seconds=1),
            maximum_interval=timedelta(seconds=60),
            maximum_attempts=policy.driver_max_attempts,
        ),
        "summary": summary,
    }


def failure_message(error: ActivityError) -> str:
    """Why a driver call failed, in words for a user message."""
    cause = error.cause
    if isinstance(cause, ActivityTimeout) and cause.type == TimeoutType.SCHEDULE_TO_START:
        return "no worker of the backend took the request in time (is its worker running?)"
    if isinstance(cause, ActivityTimeout):
        return (
            f"the backend did not answer in time ({cause.type.name if cause.type else 'timeout'})"
        )
    return str(getattr(cause, "message", None) or cause or error)


def error_message(error: ActivityError | ApplicationError) -> str:
    """Why a step failed, whether it reached the workflow as an ActivityError or (a local
    activity's) as its ApplicationError itself."""
    if isinstance(error, ActivityError):
        return failure_message(error)
    return error.message or str(error)


def is_lost_ownership(error: ActivityError | ApplicationError) -> bool:
    """A step found the resource owned by another workflow. (A local activity's failure can
    reach the workflow as its ApplicationError itself, not wrapped in an ActivityError.)"""
    cause = error if isinstance(error, ApplicationError) else error.cause
    return isinstance(cause, ApplicationError) and cause.type == LOST_OWNERSHIP
