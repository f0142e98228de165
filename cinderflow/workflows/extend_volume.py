"""Extend a volume: offline, online, or online with the compute's completion.

The API has already set `extending`, reserved the extra gigabytes (keyed by the volume) and,
in the same transaction, read the plan: the volume, whether its backend has the capacity (and
online-extend support), the attached servers. A refused plan ends the operation back in its
previous status with a user message; otherwise the driver grows the volume and says how it
went:

- `done`: commit (new size, reservation released), back to available/in-use; attached
  servers get a `volume-extended` event (best effort: a failure is only a user message);
- `needs_compute_completion` (a running guest holds the volume): with exactly one server
  attached, the target size is published (`extend_new_size`), the event is sent, and the
  workflow waits for `os-extend_volume_completion` (the `complete_extend` update) until
  `completion_timeout_s`. Success commits; an error, silence, or an undeliverable event rolls
  back to `error_extending` with a user message.

The driver's resize is a critical step: a reset or cancel waits for it, and whichever final
write follows records the size the backend now has.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.compute import ComputeActivities
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.operation import OperationActivities
    from cinderflow.activities.scheduler import SchedulerActivities
    from cinderflow.activities.volumes import VolumeActivities
    from cinderflow.db.admin_metadata import EXTEND_NEW_SIZE, EXTEND_RESERVATIONS
    from cinderflow.drivers.base import ExtendOutcome
    from cinderflow.payloads import (
        ComputeEvent,
        ExtendCheck,
        ExtendCompletion,
        ExtendPlan,
        ExtendRequest,
        FinalWrite,
        OperationOutcome,
        VolumeMessage,
    )
    from cinderflow.status import VolumeStatus
    from cinderflow.user_messages import Action, Code, Detail
    from cinderflow.workflows import common
    from cinderflow.workflows.operation import OperationInput, OperationWorkflow

COMPUTE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
NOT_WAITING = "Volume is not being extended."


class ExtendInput(OperationInput):
    new_size: int
    previous_status: str
    """available (offline extend) or in-use (online); where a refused placement returns."""
    completion_timeout_s: float = 600.0
    plan: ExtendPlan | None = None
    """What the API read in the transaction that handed the volume over (the volume, its
    backend's answer, the attached servers), so the workflow need not read it again. None in
    requests from before it did, and when the outbox sweeper starts the workflow late (the
    answer may be stale then): the workflow reads it, fenced, as its first step."""


@workflow.defn(name="ExtendVolume")
class ExtendVolume(OperationWorkflow):
    operation = "extend"
    admin_metadata_keys = (EXTEND_NEW_SIZE, EXTEND_RESERVATIONS)

    @workflow.init
    def __init__(self, request: ExtendInput) -> None:
        super().__init__()
        self.request = request
        self.waiting = False
        self.completion: ExtendCompletion | None = None

    @workflow.update
    async def complete_extend(self, completion: ExtendCompletion) -> str:
        """The compute's answer (REST os-extend_volume_completion calls this). A success
        means the disk has grown: whichever final write follows records the new size."""
        self.completion = completion
        self.waiting = False
        if not completion.error:
            self.record_effect({"size": self.request.new_size})
        return "accepted"

    @complete_extend.validator
    def _only_while_waiting(self, completion: ExtendCompletion) -> None:
        if not self.waiting or self.stop_requested:
            raise ApplicationError(NOT_WAITING, type="NotWaiting")

    @workflow.run
    async def run(self, request: ExtendInput) -> OperationOutcome:
        try:
            return await self.execute(request, self._extend(request))
        finally:
            self.waiting = False

    async def _extend(self, request: ExtendInput) -> OperationOutcome:
        online = request.previous_status == VolumeStatus.IN_USE
        check = ExtendCheck(volume_id=request.resource_id, new_size=request.new_size, online=online)
        servers: list[str] | None = None
        if request.plan is not None and workflow.patched(common.PLAN_IN_INPUT):
            # read while the API handed the volume over
            plan = request.plan
            volume, refused, servers = plan.volume, plan.refused, plan.servers
        elif workflow.patched(common.LOCAL_CONTROL_STEPS):  # one read step instead of three
            plan = await self.step(
                lambda: common.run_control(
                    SchedulerActivities.plan_extend, check, "load volume, check capacity"
                )
            )
            volume, refused, servers = plan.volume, plan.refused, plan.servers
        else:
            volume = await self.step(
                lambda: common.run_control(
                    VolumeActivities.load, request.resource_id, "load volume"
                )
            )
            refused = await self.step(
                lambda: common.run_control(
                    SchedulerActivities.check_extend, check, "check backend capacity"
                )
            )
        if refused:  # also "the volume has no backend": back where it was, with a message
            return await self._end(
                status=request.previous_status, reason=refused, detail=Detail.NO_BACKEND_AVAILABLE
            )
        assert volume.host is not None
        self.report(f"Extending to {request.new_size} GiB on `{volume.host}`.")
        extend = ExtendRequest(volume=volume, new_size=request.new_size)
        try:
            outcome = await self.critical(
                "the driver's resize",
                lambda: workflow.execute_activity_method(
                    DriverActivities.extend_volume,
                    extend,
                    **common.driver(volume.host, request.policy, "driver extend_volume"),
                ),
                effect=lambda done: (
                    {"size": request.new_size} if done == ExtendOutcome.DONE else {}
                ),
            )
        except ActivityError as error:
            return await self._end(
                status=VolumeStatus.ERROR_EXTENDING,
                reason=f"Volume driver failed: {common.failure_message(error)}",
                detail=Detail.DRIVER_FAILED_EXTEND,
            )
        if servers is None:
            servers = await self.step(
                lambda: common.run_control(VolumeActivities.servers, volume.id, "attached servers")
            )
        if outcome == ExtendOutcome.NEEDS_COMPUTE_COMPLETION:
            return await self._with_compute(extend, servers)
        done = await self._end(new_size=request.new_size)
        if servers:
            await self._notify(servers, best_effort=True)
        return done

    async def _with_compute(self, extend: ExtendRequest, servers: list[str]) -> OperationOutcome:
        if len(servers) != 1:
            return await self._end(
                status=VolumeStatus.ERROR_EXTENDING,
                reason="the driver needs the compute to extend the volume, which needs exactly "
                f"one attached server, not {len(servers)}",
                detail=Detail.DRIVER_FAILED_EXTEND,
            )
        await self.step(
            lambda: common.run_control(
                VolumeActivities.await_compute, extend, "publish extend_new_size"
            )
        )
        # Accept the answer from now on: a compute may answer before this workflow has seen
        # that its event was delivered.
        self.waiting = True
        failure = await self._notify(servers, best_effort=False)
        if failure and self.completion is None:
            self.waiting = False
            return await self._end(
                status=VolumeStatus.ERROR_EXTENDING,
                reason=failure,
                detail=Detail.NOTIFY_COMPUTE_SERVICE_FAILED,
            )
        since = workflow.now().strftime("%Y-%m-%d %H:%M:%S UTC")
        self.report(
            f"Waiting since {since} for the compute to extend volume {extend.volume.id} to "
            f"{extend.new_size} GiB on server {servers[0]} (os-extend_volume_completion), "
            f"at most {self.request.completion_timeout_s:.0f} s."
        )
        deadline = workflow.now() + timedelta(seconds=self.request.completion_timeout_s)
        try:
            await self.step(  # cut by a reset that is then refused, it waits the time left
                lambda: workflow.wait_condition(
                    lambda: self.completion is not None,
                    timeout=max(deadline - workflow.now(), timedelta(milliseconds=1)),
                    timeout_summary="extend completion timeout",
                ),
                stoppable=True,
            )
        except TimeoutError:
            if self.completion is None:
                self.waiting = False
                return await self._end(
                    status=VolumeStatus.ERROR_EXTENDING,
                    reason=f"no completion from the compute within "
                    f"{self.request.completion_timeout_s:.0f} s",
                    detail=Detail.NOTIFY_COMPUTE_SERVICE_FAILED,
                )
            # else: answered in the same workflow task as the timer fired
        assert self.completion is not None
        if self.completion.error:
            return await self._end(
                status=VolumeStatus.ERROR_EXTENDING,
                reason="the compute failed to extend the volume",
                detail=Detail.NOTIFY_COMPUTE_SERVICE_FAILED,
            )
        return await self._end(new_size=extend.new_size)

    async def _notify(self, servers: list[str], *, best_effort: bool) -> str | None:
        """Send `volume-extended`; the failure's text, or None. Best effort: only a message."""
        try:
            await self.step(
                lambda: workflow.execute_activity_method(
                    ComputeActivities.volume_extended,
                    ComputeEvent(
                        server_uuids=servers,
                        volume_id=self.request.resource_id,
                        requires_completion=not best_effort,
                    ),
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=COMPUTE_RETRY,
                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    summary="compute volume-extended event",
                )
            )
        except ActivityError as error:
            failure = (
                f"the volume-extended event was not delivered: {common.failure_message(error)}"
            )
            if best_effort:
                await self.step(
                    lambda: common.run_control(
                        OperationActivities.record_message,
                        VolumeMessage(
                            volume_id=self.request.resource_id,
                            message=self.message(
                                Action.EXTEND_VOLUME, Detail.NOTIFY_COMPUTE_SERVICE_FAILED
                            ),
                        ),
                        "user message",
                    )
                )
            return failure
        return None

    async def _end(
        self,
        *,
        new_size: int | None = None,
        status: str | None = None,
        reason: str | None = None,
        detail: Code | None = None,
    ) -> OperationOutcome:
        """Commit (`new_size`; the status follows the attachments) or roll back."""
        self.waiting = False
        write = FinalWrite(
            resource_id=self.request.resource_id,
            status=status,
            values={"size": new_size} if new_size is not None else {},
            reason=reason,
            message=self.message(Action.EXTEND_VOLUME, detail) if detail else None,
        )
        if new_size is None:
            return await self.fail(write)
        outcome = await self.finish(write)
        return outcome.model_copy(update={"status": f"extended to {new_size} GiB"})
