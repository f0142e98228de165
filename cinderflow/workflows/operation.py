"""The operation base: what every workflow that owns a volume or snapshot shares.

An operation's workflow subclasses `OperationWorkflow`, declares `@workflow.run` (Temporal
needs it on the concrete class, with the typed input) and calls `execute(request, body)`.
The body does its work through these verbs and ends with `finish` or `fail`:

- `step(work, effect=...)`: a step a reset or cancel may cut. `work()` makes the step's
  awaitable (one activity, or one wait); only leaf steps go through it, so no caller can mistake
  a cut for a failure and carry on. A cut waits until the step has really ended: a driver call
  that already runs on its backend is let finish (driver activities wait for their cancellation
  to complete, activities/driver.py). If the cut step completed anyway, its result stands (and
  its `effect`, the field changes it made on the backend, rides on the next final write).
- `critical(name, work, effect=...)`: a step that is never cut (an extend's resize); a reset
  or cancel waits for it.
- `undo_with(name, undo)`: how to undo what a step just created; on failure, reset or cancel
  the undos run in reverse (a saga's compensations). `undone_by_step(name)` forgets one that
  a later step made unnecessary.
- `report(phase, percent)`: progress in workflow state, shown as current details and read
  through the `progress` query.
- `close()`, then `finish(write)` / `fail(write)`: the one fenced final write
  (activities/operation.py); `fail` compensates first. `until_done(what, work)`: a cleanup
  after it, tried until it succeeds.

**Resets** are the `reset_status` update, declared here once. A reset first pauses the body:
the current step is cut (and waited for), critical steps run to their end, no new step starts.
Only then, with nothing of the operation running, does the reset's backend half run (the driver
is asked first, reset_backend.py). If the driver refuses, the body goes on (the cut step runs
again: steps are idempotent). If it agrees, the body stops, compensates and writes the reset as
its end: only the owner ever writes the resource's status. **A workflow cancel** stops the body
the same way (after any critical step) and ends in the status the resource had before the
operation. Whichever way the body ends, a reset still waiting is answered, and the run waits for
every handler before it returns (temporalio samples, message_passing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.driver import COPY_PROGRESS_SIGNAL
    from cinderflow.activities.operation import OperationActivities
    from cinderflow.payloads import (
        CancelRequest,
        FinalWrite,
        OperationOutcome,
        OperationPolicy,
        OperationProgress,
        ResetOutcome,
        ResetRequest,
        UserMessageSpec,
        VolumeMessage,
    )
    from cinderflow.status import OperationStatus, ResourceKind
    from cinderflow.user_messages import Action, Code, Detail
    from cinderflow.workflows import common
    from cinderflow.workflows.reset_backend import backend_reset

T = TypeVar("T")
NOT_RESETTABLE = "NotResettable"
NOT_CANCELLABLE = "NotCancellable"
CANCEL_UPDATE = "cancel"
LOST = "lost-ownership"
"""The outcome's status when the final write found another owner (nothing was written)."""
MESSAGE_RESOURCE_TYPES = {ResourceKind.VOLUME: "VOLUME", ResourceKind.SNAPSHOT: "VOLUME_SNAPSHOT"}


class OperationInput(BaseModel):
    """What every operation gets: its resource, the policy fixed at request time, the
    request that asked for it (carried into user messages)."""

    resource_id: str
    policy: OperationPolicy = Field(default_factory=OperationPolicy)
    request_id: str | None = None


class Stopped(Exception):
    """Raised in an operation's body when it must stop: a reset took over, or a cancel."""


def _was_cut(task: asyncio.Future[Any]) -> bool:
    """The step ended because it was cut, not with its own result or failure."""
    return task.cancelled() or is_cancelled_exception(task.exception())


class OperationWorkflow:
    operation: ClassVar[str]
    """The operation's name in words and messages ("create", "extend")."""
    resource: ClassVar[ResourceKind] = ResourceKind.VOLUME
    admin_metadata_keys: ClassVar[tuple[str, ...]] = ()
    """Admin metadata the operation publishes; every end removes it."""
    takes_resets: ClassVar[bool] = True
    """False for the reset workflow itself: a second reset must wait for the first."""
    cancellable: ClassVar[bool] = True
    """False: a workflow cancel is ignored (the reset workflow always writes what it did)."""

    def __init__(self) -> None:
        self._resource_id: str | None = None
        self._request_id: str | None = None
        self._progress = OperationProgress(operation=self.operation)
        self._undos: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        self._effects: dict[str, Any] = {}
        self._critical: list[str] = []
        self._running = 0
        """Steps (and shielded steps) in flight: a reset's backend half waits for none."""
        self._reset: ResetRequest | None = None
        """An accepted reset (its backend half done): the body must stop and it takes over."""
        self._reset_failure: str | None = None
        self._reset_outcome: ResetOutcome | None = None
        self._reset_busy = False
        """A reset is in progress: the body is kept still (steps cut, none starts) until it
        has been refused or has taken over."""
        self._cancelled = False
        self._stoppable = 0
        """Stoppable steps running (a user's cancel is taken only then)."""
        self._cancelled_by: str | None = None
        self._finishing = False
        self._ended = False
        self.copying = ""
        """The phase a copy's percentage belongs to (empty: no copy runs)."""

    # Messages -----------------------------------------------------------------------------

    @workflow.signal(name=COPY_PROGRESS_SIGNAL)
    def copy_progress(self, percent: int) -> None:
        """A copy's percentage, sent by its driver activity as it grows (activities/driver.py
        ProgressSignal), shown while `copying` names the phase."""
        if self.copying and 0 <= percent <= 100:
            self.report(self.copying, percent)

    @workflow.update
    async def reset_status(self, request: ResetRequest) -> ResetOutcome:
        """An administrator's os-reset_status while this operation owns the resource (the
        API sends it here): pause the operation, make the backend match, then let the
        operation go on (refused) or stop it, so that it compensates and writes the reset."""
        self._reset_busy = True
        try:
            await workflow.wait_condition(lambda: self._resource_id is not None)
            if request.resource_id != self._resource_id:
                raise ApplicationError(self._not_ours(request), type=NOT_RESETTABLE)
            waiting_for = self._critical[0] if self._critical else "the current step"
            self._show(reset=f"waiting for {waiting_for} to end")
            await workflow.wait_condition(lambda: self._still or self._finishing or self._ended)
            if self._ended:
                return self._ended_outcome()
            if self._finishing:  # an irreversible step completed while the reset waited
                raise ApplicationError(
                    f"operation {self.operation} has passed the point where it can stop (its "
                    "backend change is done); it is finishing, reset again once it has ended",
                    type=NOT_RESETTABLE,
                )
            self._show(reset=f"resetting to {request.status}: the backend first")
            failure = await backend_reset(request)
            if failure and not request.force:
                await self._refused(request)
                return ResetOutcome(done=False, detail=failure)
            self._reset_failure, self._reset = failure, request
            self._show(reset=f"taking over to write {request.status}")
            await workflow.wait_condition(lambda: self._reset_outcome is not None)
            assert self._reset_outcome is not None
            return self._reset_outcome
        finally:
            self._reset_busy = False
            if self._reset is None:
                self._show(reset=None)

    @reset_status.validator
    def _reset_allowed(self, request: ResetRequest) -> None:
        if not self.takes_resets:
            raise ApplicationError(
                "another reset of this volume is in progress", type=NOT_RESETTABLE
            )
        if request.resource != self.resource:
            raise ApplicationError(self._not_ours(request), type=NOT_RESETTABLE)
        if self._finishing or self._ended:
            raise ApplicationError(
                "the operation is finishing; reset again once it has ended", type=NOT_RESETTABLE
            )
        if self._reset_busy or self._reset is not None:
            raise ApplicationError("another reset is in progress", type=NOT_RESETTABLE)
        if self._cancelled:
            raise ApplicationError(
                "the operation is being cancelled; reset again once it has ended",
                type=NOT_RESETTABLE,
            )
        refusal = self.reset_refusal()
        if refusal:
            raise ApplicationError(refusal, type=NOT_RESETTABLE)

    def reset_refusal(self) -> str | None:
        """Hook: why the operation cannot take a reset now (it has passed a point it cannot
        undo that no step marks, e.g. a compute's answer it must carry through)."""
        return None

    @workflow.update(name=CANCEL_UPDATE)
    async def cancel(self, request: CancelRequest) -> OperationProgress:
        """A user's cancel (`POST /operations/{id}/action {"cancel": null}`): the running step
        is cut, what the operation made is undone, and the resource returns to the status it
        had before (as a workflow cancel, but refused where it could not stop cleanly)."""
        if not self._cancelled:
            refusal = self._cancel_refusal()  # again: it may have begun to finish meanwhile
            if refusal:
                raise ApplicationError(refusal, type=NOT_CANCELLABLE)
            self._cancelled_by = request.user_id
            self._cancelled = True
            self._show()
        return self._progress.model_copy()

    @cancel.validator
    def _cancel_allowed(self, request: CancelRequest) -> None:
        if self._cancelled and not self._ended:
            return  # asked again: the same answer
        refusal = self._cancel_refusal()
        if refusal:
            raise ApplicationError(refusal, type=NOT_CANCELLABLE)

    def _cancel_refusal(self) -> str | None:
        """Why a user's cancel cannot be taken now (None: it can): the one rule the update
        applies and the progress shows as `cancellable`."""
        if not self.cancellable:
            return f"operation {self.operation} cannot be cancelled"
        if self._finishing or self._ended:
            return f"operation {self.operation} can no longer be cancelled: it is finishing"
        if self._reset_busy or self._reset is not None:
            return "an administrator's reset of the resource is in progress"
        if not self._stoppable:
            return (
                f"operation {self.operation} cannot stop cleanly now "
                f"({self._progress.phase or self.operation}); it can be cancelled while it "
                "copies data or waits for a compute"
            )
        return None

    @workflow.query
    def progress(self) -> OperationProgress:
        """What the operation is doing now, how far, and whether a reset waits."""
        return self._progress.model_copy()

    # The template ---------------------------------------------------------------------------

    async def execute(
        self, request: OperationInput | ResetRequest, body: Awaitable[OperationOutcome]
    ) -> OperationOutcome:
        """Run the body; on a reset or cancel, compensate and write that end instead; answer a
        reset still waiting whichever way the body ended; wait for every handler."""
        self._resource_id = request.resource_id
        self._request_id = request.request_id
        self._progress.resource_id = request.resource_id
        try:
            try:
                outcome = await body
            except Stopped:
                outcome = await self._stop()
            except BaseException as error:
                if not is_cancelled_exception(error) or not self.cancellable or self._finishing:
                    raise
                self._cancelled = True
                outcome = await self._stop()
        finally:
            self._ended = True
            if self._reset_outcome is None:
                self._reset_outcome = self._ended_outcome()
            await workflow.wait_condition(workflow.all_handlers_finished)
        return outcome

    @property
    def stop_requested(self) -> bool:
        """A reset took over or the workflow was cancelled: the body must stop."""
        return self._reset is not None or self._cancelled

    # Verbs for the body -----------------------------------------------------------------------

    async def step(
        self,
        work: Callable[[], Awaitable[T]],
        *,
        effect: Callable[[T], dict[str, Any]] | None = None,
        irreversible: bool = False,
        stoppable: bool = False,
    ) -> T:
        """Run a step a reset or cancel may cut (see the module's docstring). `irreversible`:
        once it has completed nothing can be restored (a volume's backend delete), so the
        operation can only finish: it closes, and a reset waiting for it is told so.
        `stoppable`: the step stops cleanly when cut (a copy, a wait for a compute), so a
        user's `cancel` is taken while it runs."""
        while True:
            await self._boundary()
            self._running += 1
            if stoppable:
                self._stoppable += 1
                self._show()
            try:
                task = asyncio.ensure_future(work())
                cut = asyncio.ensure_future(
                    workflow.wait_condition(lambda: self._reset_busy or self._must_stop)
                )
                while not (task.done() or cut.done()):
                    try:
                        await workflow.wait([task, cut], return_when=asyncio.FIRST_COMPLETED)
                    except asyncio.CancelledError:
                        self._cancel_requested()  # the workflow was cancelled while it waited
                if not cut.done():
                    cut.cancel()
                await self._settled(cut)
                if not task.done():
                    task.cancel()
                await self._settled(task)
            finally:
                self._running -= 1
                if stoppable:
                    self._stoppable -= 1
                    self._show()
            if not _was_cut(task):
                result = task.result()  # the step's own result, or its own failure
                if effect is not None:
                    self._effects.update(effect(result))
                if irreversible:
                    self._finishing = True
                    self._show()
                return result
            # Cut before it ended: wait at the boundary, then stop, or run it again.

    async def critical(
        self,
        name: str,
        work: Callable[[], Awaitable[T]],
        *,
        effect: Callable[[T], dict[str, Any]] | None = None,
    ) -> T:
        """Run a step that is never cut short (see the module's docstring)."""
        await self._boundary()
        self._critical.append(name)
        self._show()
        try:
            result = await self.shielded(work())
        finally:
            self._critical.remove(name)
            self._show()
        if effect is not None:
            self._effects.update(effect(result))
        return result

    def undo_with(self, name: str, undo: Callable[[], Awaitable[Any]]) -> None:
        """Register the undo of what a step just created (run in reverse if the operation
        fails, is reset or cancelled)."""
        self._undos.append((name, undo))

    def undone_by_step(self, name: str) -> None:
        """The step just run undid what `name` would undo (a connection ended on the way):
        forget that undo."""
        self._undos = [(n, undo) for n, undo in self._undos if n != name]

    def record_effect(self, changes: dict[str, Any]) -> None:
        """Field changes the backend now has (a compute grew the disk), whoever ends it."""
        self._effects.update(changes)

    def report(self, phase: str, percent: int | None = None) -> None:
        """What the operation does now (and how far), for the UI and the progress query."""
        self._progress.phase = phase
        self._progress.percent = percent
        self._show()

    async def close(self) -> None:
        """From here the operation only finishes: a reset whose backend half is running is
        waited for (accepted, it takes over: Stopped), later resets are refused, and a cancel
        comes too late."""
        if self._finishing:
            return
        while self._reset_busy and self._reset is None:
            try:
                await workflow.wait_condition(
                    lambda: not self._reset_busy or self._reset is not None
                )
            except asyncio.CancelledError:
                workflow.logger.info("cancel of %s ignored: it is finishing", self.operation)
        if self._reset is not None:
            raise Stopped
        self._finishing = True
        self._show()

    async def finish(self, write: FinalWrite) -> OperationOutcome:
        """The operation's end: close, then the one fenced final write. A reset or cancel
        that waited for a critical step (the body's last step may be one) stops the
        operation here, as it would have at the next step: "after any critical step"."""
        await self._boundary()
        await self.close()
        return await self._write(write)

    async def fail(self, write: FinalWrite) -> OperationOutcome:
        """A failed end: close, compensate, then the final write (with its user message)."""
        await self.close()
        await self._compensate()
        return await self._write(
            write.model_copy(update={"outcome": write.outcome or OperationStatus.FAILED})
        )

    async def shielded(self, work: Awaitable[T]) -> T:
        """Run a step to its end even through a workflow cancel (the steps after `close`, a
        cascade's part writes); a reset's backend half waits for it."""
        self._running += 1
        try:
            task = asyncio.ensure_future(work)
            await self._settled(task)
        finally:
            self._running -= 1
        return task.result()

    async def until_done(self, what: str, work: Callable[[], Awaitable[T]]) -> T:
        """A cleanup after the final write (what the operation leaves is no one's now, so it
        must not stay for good): shielded, and tried again, backing off to 10 minutes,
        whatever fails; its failures show in the current details."""
        pause = timedelta(seconds=5)
        while True:
            try:
                return await self.shielded(work())
            except ActivityError as error:
                self.report(f"{what} failed ({common.failure_message(error)}); trying again.")
                await self.shielded(workflow.sleep(pause))
                pause = min(pause * 2, timedelta(minutes=10))

    async def write_part(self, write: FinalWrite) -> None:
        """The end of another resource this operation owns (a cascade's snapshot), fenced
        like the final write, ending nothing else of the operation."""
        await self.shielded(
            common.run_control(
                OperationActivities.finish,
                write.model_copy(update={"part": True}),
                f"end {write.resource_id}",
            )
        )

    def message(self, action: Code, detail: Code) -> UserMessageSpec:
        """A user message about this operation's resource, for its request."""
        return UserMessageSpec(
            action=action.id,
            detail=detail.id,
            resource_type=MESSAGE_RESOURCE_TYPES[self.resource],
            request_id=self._request_id,
        )

    def stopped_write(self, write: FinalWrite) -> FinalWrite:
        """Hook: adjust the write that ends a stopped operation (a reset's or a cancel's)."""
        return write

    # Internals -----------------------------------------------------------------------------

    @property
    def _still(self) -> bool:
        """Nothing of the operation runs (critical steps run shielded): the body waits."""
        return self._running == 0

    @property
    def _must_stop(self) -> bool:
        """Stop at the next boundary: a stop was asked for and the operation is not finishing
        (after close, its last steps run whatever comes)."""
        return self.stop_requested and not self._finishing

    async def _boundary(self) -> None:
        """Between steps: wait while a reset checks the backend; stop if one took over or
        the workflow was cancelled."""
        if self._reset_busy and not self._must_stop:
            await workflow.wait_condition(lambda: not self._reset_busy or self._must_stop)
        if self._must_stop:
            raise Stopped

    async def _stop(self) -> OperationOutcome:
        """Undo what the operation made, then end it as the reset or the cancel says."""
        await workflow.wait_condition(lambda: not self._reset_busy or self._reset is not None)
        self._finishing = True
        self._show()
        await self._compensate()
        if self._reset is not None:
            request = self._reset
            reason = f"{self.operation} stopped by an administrator's reset to {request.status}"
            if self._reset_failure:
                reason += f" (driver: {self._reset_failure})"
            self.report(f"Stopped by a reset to {request.status}.")
            write = FinalWrite(
                resource=request.resource,
                resource_id=request.resource_id,
                status=request.status,
                attach_status=request.attach_status,
                migration_status=request.migration_status,
                reason=reason,
                message=self.message(Action.RESET_STATUS, Detail.STOPPED_BY_RESET),
                outcome=OperationStatus.RESET,
            )
            outcome = await self._write(self.stopped_write(write))
            lost = outcome.status == LOST
            self._reset_outcome = ResetOutcome(
                done=not lost, lost=lost, detail=outcome.detail if lost else reason
            )
            return outcome
        self.report("Cancelled: back to the status before the operation.")
        assert self._resource_id is not None
        write = FinalWrite(
            resource=self.resource,
            resource_id=self._resource_id,
            previous=True,
            reason=f"{self.operation} cancelled"
            + (f" by {self._cancelled_by}" if self._cancelled_by else ""),
            outcome=OperationStatus.CANCELLED,
        )
        return await self._write(self.stopped_write(write))

    async def _write(self, write: FinalWrite) -> OperationOutcome:
        """The final write: the steps' effects ride along; a final write that finds another
        owner (the operator took the resource) ends the operation without writing."""
        write.values = {**self._effects, **write.values}
        write.admin_metadata = sorted({*write.admin_metadata, *self.admin_metadata_keys})
        try:
            await self.shielded(
                common.run_control(OperationActivities.finish, write, "final write")
            )
        except (ActivityError, ApplicationError) as error:
            if not common.is_lost_ownership(error):
                raise
            return OperationOutcome(
                resource_id=write.resource_id, status=LOST, detail=str(error), done=False
            )
        status = "deleted" if write.remove else (write.status or "as its attachments imply")
        if write.previous:
            status = "previous status"
        return OperationOutcome(resource_id=write.resource_id, status=status, detail=write.reason)

    async def _compensate(self) -> None:
        """Run the registered undos, last first; an undo that fails is reported, not fatal
        (the others still run)."""
        while self._undos:
            name, undo = self._undos.pop()
            self.report(f"Undoing: {name}.")
            try:
                await self.shielded(undo())
            except Exception as error:  # an ActivityError, once its retries are spent
                workflow.logger.warning("undo %s failed: %s", name, error)

    async def _settled(self, task: asyncio.Future[Any]) -> None:
        """Wait until `task` has ended, through a workflow cancel (remembered, not lost), and
        collect its outcome so that no abandoned task logs "exception never retrieved"."""
        while not task.done():
            try:
                await workflow.wait([task])
            except asyncio.CancelledError:
                self._cancel_requested()
        if not task.cancelled():
            task.exception()

    async def _refused(self, request: ResetRequest) -> None:
        """The driver refused a reset of a volume in flight: say so (101/101); it goes on."""
        if request.resource != ResourceKind.VOLUME:
            return
        await common.run_control(
            OperationActivities.record_message,
            VolumeMessage(
                volume_id=request.resource_id,
                message=self.message(Action.RESET_STATUS, Detail.DRIVER_FAILED_RESET),
            ),
            "user message",
        )

    def _cancel_requested(self) -> None:
        """A workflow cancel reached a wait: stop at the next chance, if the operation can."""
        if self.cancellable and not self._finishing:
            self._cancelled = True
        else:
            workflow.logger.info("cancel of %s ignored: it cannot stop now", self.operation)

    def _not_ours(self, request: ResetRequest) -> str:
        return (
            f"{request.resource} {request.resource_id} is part of operation {self.operation} of "
            f"{self.resource} {self._resource_id or '(starting)'}; reset that instead"
        )

    def _ended_outcome(self) -> ResetOutcome:
        return ResetOutcome(
            done=False,
            ended=True,
            detail=f"operation {self.operation} ended before the reset could apply",
        )

    def _show(self, **changes: Any) -> None:
        """Publish the progress: the query's state and the workflow's current details."""
        for key, value in changes.items():
            setattr(self._progress, key, value)
        self._progress.critical = self._critical[0] if self._critical else None
        self._progress.finishing = self._finishing
        self._progress.cancelling = self._cancelled and not self._ended
        self._progress.cancellable = not self._cancelled and self._cancel_refusal() is None
        self._progress.updated_at = workflow.now()
        lines = [self._progress.phase or f"{self.operation}"]
        if self._progress.percent is not None:
            lines[0] += f" ({self._progress.percent}%)"
        if self._progress.critical:
            lines.append(f"Running {self._progress.critical}: a reset or cancel waits for it.")
        if self._progress.reset:
            lines.append(f"Reset: {self._progress.reset}.")
        workflow.set_current_details("\n\n".join(lines))
