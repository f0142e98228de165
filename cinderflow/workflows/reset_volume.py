"""Reset a volume's status truthfully: the backend first, then the database.

`backend_reset` terminates the connections a reset to `detached` removes and asks the driver
to make the backend match (`reset_state`, when the driver implements it). Its failure refuses
the reset unless the admin forced it.

A volume nobody owns is reset by the short `ResetVolume` workflow. A volume an operation owns
is reset by that operation's workflow: its `reset_status` update (see `ResetGate`) runs the
backend half, then interrupts the operation, which stops waiting, abandons its pending
activity, compensates and writes the reset itself; so only one party ever writes the status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.volumes import VolumeActivities
    from cinderflow.payloads import (
        DriverReset,
        OperationOutcome,
        ResetApply,
        ResetOutcome,
        ResetRequest,
        UserMessageSpec,
    )
    from cinderflow.user_messages import Action, Code, Detail
    from cinderflow.workflows import common

T = TypeVar("T")
NOT_RESETTABLE = "NotResettable"


async def backend_reset(request: ResetRequest) -> str | None:
    """Make the backend match the reset; the driver's error, or None."""
    volume = await workflow.execute_activity_method(
        VolumeActivities.load, request.volume_id, **common.control("load volume")
    )
    if volume.host is None:
        return None  # never placed on a backend: nothing there to change
    failures: list[str] = []
    options = common.driver(volume.host, request.policy)
    if request.attach_status == "detached":
        connections = await workflow.execute_activity_method(
            VolumeActivities.connections, request.volume_id, **common.control("attachments")
        )
        for connection in connections:
            if not connection.connector:
                continue  # reserved, never connected: no export to end
            try:
                await workflow.execute_activity_method(
                    DriverActivities.terminate_connection,
                    connection,
                    **{**options, "summary": f"terminate connection {connection.attachment_id}"},
                )
            except ActivityError as error:
                failures.append(
                    f"terminate_connection of attachment {connection.attachment_id}: "
                    f"{common.failure_message(error)}"
                )
    try:
        await workflow.execute_activity_method(
            DriverActivities.reset_state,
            DriverReset(volume=volume, status=request.status, attach_status=request.attach_status),
            **{**options, "summary": f"driver reset_state to {request.status}"},
        )
    except ActivityError as error:
        failures.append(f"reset_state: {common.failure_message(error)}")
    return "; ".join(failures) or None


def message(request: ResetRequest, detail: Code) -> UserMessageSpec:
    return UserMessageSpec(
        action=Action.RESET_STATUS.id, detail=detail.id, request_id=request.request_id
    )


async def apply_reset(request: ResetRequest, reason: str, detail: Code | None = None) -> None:
    """The database half: status, attachments, reservations, extend keys; then release."""
    await workflow.execute_activity_method(
        VolumeActivities.apply_reset,
        ResetApply(
            request=request, reason=reason, message=message(request, detail) if detail else None
        ),
        **common.control(f"reset to {request.status}"),
    )


def forced_reason(failure: str | None) -> str:
    return f"reset by an administrator despite the driver: {failure}" if failure else "reset"


class ResetInterrupted(Exception):
    """Raised inside an operation's run when an accepted reset must take over."""


class ResetGate:
    """What an operation's workflow needs to accept `reset_status` updates.

    The workflow calls `guard(...)` around each step a reset may cut short (not around a
    driver call that changes the volume's data or size: that one must finish, or the backend
    would change after the reset), includes `requested` in its waits, awaits `close()` before
    its final write, and on ResetInterrupted compensates and calls `take_over()`.
    """

    def __init__(self) -> None:
        self.request: ResetRequest | None = None
        self.failure: str | None = None
        self.outcome: ResetOutcome | None = None
        self.busy = False
        self.closed = False

    @property
    def requested(self) -> bool:
        return self.request is not None

    def validate(self) -> None:
        if self.closed:
            raise ApplicationError(
                "the operation is finishing; reset the volume again once it has ended",
                type=NOT_RESETTABLE,
            )
        if self.busy:
            raise ApplicationError(
                "another reset of this volume is in progress", type=NOT_RESETTABLE
            )

    async def handle(self, request: ResetRequest) -> ResetOutcome:
        """The update's body: backend first; refused without force; else interrupt and
        wait until the run has compensated and written the reset."""
        self.busy = True
        failure = await backend_reset(request)
        if failure and not request.force:
            self.busy = False
            return ResetOutcome(done=False, detail=failure)
        self.failure, self.request = failure, request
        await workflow.wait_condition(lambda: self.outcome is not None)
        assert self.outcome is not None
        return self.outcome

    async def guard(self, step: Awaitable[T]) -> T:
        """Run `step` unless a reset takes over first; then abandon it (its activity is
        cancelled) and raise ResetInterrupted."""
        if self.requested:
            raise ResetInterrupted
        task = asyncio.ensure_future(step)
        reset = asyncio.ensure_future(workflow.wait_condition(lambda: self.requested))
        await workflow.wait([task, reset], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            reset.cancel()
            return task.result()
        task.cancel()
        raise ResetInterrupted

    async def close(self) -> None:
        """No resets from here on (the final write follows), unless one is already in. A
        reset whose backend half is running is waited for, so that it cannot end
        connections and then lose to the operation's own write."""
        await workflow.wait_condition(lambda: not self.busy or self.requested)
        if self.requested:
            raise ResetInterrupted
        self.closed = True

    async def take_over(self, operation: str) -> OperationOutcome:
        """Write the reset as this operation's end, and answer the update."""
        assert self.request is not None
        request = self.request
        workflow.set_current_details(f"Stopped by a reset to {request.status}.")
        reason = f"{operation} stopped by an administrator's reset to {request.status}"
        if self.failure:
            reason += f" (driver: {self.failure})"
        await apply_reset(request, reason, Detail.STOPPED_BY_RESET)
        self.outcome = ResetOutcome(done=True, detail=reason)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return OperationOutcome(volume_id=request.volume_id, status=request.status, detail=reason)


@workflow.defn(name="ResetVolume")
class ResetVolume:
    """Own the volume while its backend is made to match, then write the reset (or, refused,
    leave the status as it was and record why)."""

    @workflow.run
    async def run(self, request: ResetRequest) -> ResetOutcome:
        workflow.set_current_details(f"Resetting to {request.status}: backend first.")
        failure = await backend_reset(request)
        if failure and not request.force:
            await common.release(
                request.volume_id,
                request.current_status,
                reason=f"reset to {request.status} refused: {failure}",
                message=message(request, Detail.DRIVER_FAILED_RESET),
            )
            return ResetOutcome(done=False, detail=failure)
        await apply_reset(request, forced_reason(failure))
        return ResetOutcome(done=True, detail=forced_reason(failure))
