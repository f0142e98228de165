"""Extend a volume: offline, online, or online with the compute's completion.

The API has already set `extending` and reserved the extra gigabytes (keyed by the volume).
The backend's capacity is checked, then the driver grows the volume and says how it went:

- `done`: commit (new size, reservation released), back to available/in-use; attached
  servers get a `volume-extended` event (best effort: a failure is only a user message);
- `needs_compute_completion` (a running guest holds the volume): with exactly one server
  attached, the target size is published (`extend_new_size`), the event is sent, and the
  workflow waits for `os-extend_volume_completion` (the `complete_extend` update) until
  `completion_timeout_s`. Success commits; an error, silence, or an undeliverable event rolls
  back to `error_extending` with a user message.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.compute import ComputeActivities
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.scheduler import SchedulerActivities
    from cinderflow.activities.volumes import VolumeActivities
    from cinderflow.drivers.base import ExtendOutcome
    from cinderflow.payloads import (
        ComputeEvent,
        ExtendCheck,
        ExtendCompletion,
        ExtendFinish,
        ExtendInput,
        ExtendRequest,
        OperationOutcome,
        ResetOutcome,
        ResetRequest,
        UserMessageSpec,
        VolumeMessage,
    )
    from cinderflow.user_messages import Action, Code, Detail
    from cinderflow.workflows import common
    from cinderflow.workflows.reset_volume import ResetGate, ResetInterrupted

COMPUTE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
NOT_WAITING = "Volume is not being extended."


@workflow.defn(name="ExtendVolume")
class ExtendVolume:
    @workflow.init
    def __init__(self, request: ExtendInput) -> None:
        self.request = request
        self.waiting = False
        self.completion: ExtendCompletion | None = None
        self.resets = ResetGate()

    @workflow.update
    async def complete_extend(self, completion: ExtendCompletion) -> str:
        """The compute's answer (REST os-extend_volume_completion calls this)."""
        self.completion = completion
        self.waiting = False
        return "accepted"

    @complete_extend.validator
    def _only_while_waiting(self, completion: ExtendCompletion) -> None:
        if not self.waiting or self.resets.requested:
            raise ApplicationError(NOT_WAITING, type="NotWaiting")

    @workflow.update
    async def reset_status(self, request: ResetRequest) -> ResetOutcome:
        """An admin's reset while this extend owns the volume (os-reset_status calls this):
        stop waiting, roll the reservation back, drop the keys, set the requested status."""
        return await self.resets.handle(request)

    @reset_status.validator
    def _reset_allowed(self, request: ResetRequest) -> None:
        self.resets.validate()

    @workflow.run
    async def run(self, request: ExtendInput) -> OperationOutcome:
        try:
            outcome = await self._extend(request)
        except ResetInterrupted:
            self.waiting = False
            return await self.resets.take_over("extend")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return outcome

    async def _extend(self, request: ExtendInput) -> OperationOutcome:
        volume = await self.resets.guard(
            workflow.execute_activity_method(
                VolumeActivities.load, request.volume_id, **common.control("load volume")
            )
        )
        assert volume.host is not None
        online = request.previous_status == "in-use"
        refused = await self.resets.guard(
            workflow.execute_activity_method(
                SchedulerActivities.check_extend,
                ExtendCheck(volume_id=volume.id, new_size=request.new_size, online=online),
                **common.control("check backend capacity"),
            )
        )
        if refused:
            return await self._finish(
                status=request.previous_status, reason=refused, detail=Detail.NO_BACKEND_AVAILABLE
            )
        workflow.set_current_details(f"Extending to {request.new_size} GiB on `{volume.host}`.")
        try:
            # Not guarded: a reset waits for the resize (an abandoned one would grow the
            # file after the reset had kept the old size).
            outcome = await workflow.execute_activity_method(
                DriverActivities.extend_volume,
                ExtendRequest(volume=volume, new_size=request.new_size),
                **common.driver(volume.host, request.policy, "driver extend_volume"),
            )
        except ActivityError as error:
            return await self._finish(
                status="error_extending",
                reason=f"Volume driver failed: {common.failure_message(error)}",
                detail=Detail.DRIVER_FAILED_EXTEND,
            )
        servers = await self.resets.guard(
            workflow.execute_activity_method(
                VolumeActivities.servers, volume.id, **common.control("attached servers")
            )
        )
        if outcome == ExtendOutcome.NEEDS_COMPUTE_COMPLETION:
            return await self._with_compute(
                ExtendRequest(volume=volume, new_size=request.new_size), servers
            )
        done = await self._finish(new_size=request.new_size)
        if servers:
            await self._notify(servers, best_effort=True)
        return done

    async def _with_compute(self, extend: ExtendRequest, servers: list[str]) -> OperationOutcome:
        if len(servers) != 1:
            return await self._finish(
                status="error_extending",
                reason="the driver needs the compute to extend the volume, which needs exactly "
                f"one attached server, not {len(servers)}",
                detail=Detail.DRIVER_FAILED_EXTEND,
            )
        await self.resets.guard(
            workflow.execute_activity_method(
                VolumeActivities.await_compute, extend, **common.control("publish extend_new_size")
            )
        )
        # Accept the answer from now on: a compute may answer before this workflow has seen
        # that its event was delivered.
        self.waiting = True
        failure = await self._notify(servers, best_effort=False)
        if failure and self.completion is None:
            self.waiting = False
            return await self._finish(
                status="error_extending",
                reason=failure,
                detail=Detail.NOTIFY_COMPUTE_SERVICE_FAILED,
            )
        since = workflow.now().strftime("%Y-%m-%d %H:%M:%S UTC")
        workflow.set_current_details(
            f"Waiting since {since} for the compute to extend volume {extend.volume.id} to "
            f"{extend.new_size} GiB on server {servers[0]} (os-extend_volume_completion), "
            f"at most {self.request.completion_timeout_s:.0f} s."
        )
        try:
            await workflow.wait_condition(
                lambda: self.completion is not None or self.resets.requested,
                timeout=timedelta(seconds=self.request.completion_timeout_s),
                timeout_summary="extend completion timeout",
            )
            if self.completion is None:
                raise ResetInterrupted
        except TimeoutError:
            if self.completion is not None:  # answered in the same step the timer fired
                return await self._complete(extend)
            self.waiting = False
            return await self._finish(
                status="error_extending",
                reason=f"no completion from the compute within "
                f"{self.request.completion_timeout_s:.0f} s",
                detail=Detail.NOTIFY_COMPUTE_SERVICE_FAILED,
            )
        return await self._complete(extend)

    async def _complete(self, extend: ExtendRequest) -> OperationOutcome:
        assert self.completion is not None
        if self.completion.error:
            return await self._finish(
                status="error_extending",
                reason="the compute failed to extend the volume",
                detail=Detail.NOTIFY_COMPUTE_SERVICE_FAILED,
            )
        return await self._finish(new_size=extend.new_size)

    async def _notify(self, servers: list[str], *, best_effort: bool) -> str | None:
        """Send `volume-extended`; the failure's text, or None. Best effort: only a message."""
        try:
            await self.resets.guard(
                workflow.execute_activity_method(
                    ComputeActivities.volume_extended,
                    ComputeEvent(
                        server_uuids=servers,
                        volume_id=self.request.volume_id,
                        requires_completion=not best_effort,
                    ),
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=COMPUTE_RETRY,
                    summary="compute volume-extended event",
                )
            )
        except ActivityError as error:
            failure = (
                f"the volume-extended event was not delivered: {common.failure_message(error)}"
            )
            if best_effort:
                await workflow.execute_activity_method(
                    VolumeActivities.record_message,
                    VolumeMessage(
                        volume_id=self.request.volume_id,
                        message=self._message(Detail.NOTIFY_COMPUTE_SERVICE_FAILED),
                    ),
                    **common.control("user message"),
                )
            return failure
        return None

    async def _finish(
        self,
        *,
        new_size: int | None = None,
        status: str | None = None,
        reason: str | None = None,
        detail: Code | None = None,
    ) -> OperationOutcome:
        """Commit (`new_size`) or roll back, and release the volume."""
        await self.resets.close()
        self.waiting = False
        finish = ExtendFinish(
            volume_id=self.request.volume_id,
            new_size=new_size,
            status=status,
            reason=reason,
            message=self._message(detail) if detail else None,
        )
        try:
            await workflow.execute_activity_method(
                VolumeActivities.finish_extend, finish, **common.control("finish extend")
            )
        except ActivityError as error:
            if not common.is_lost_ownership(error):
                raise
            return OperationOutcome(
                volume_id=self.request.volume_id, status="lost-ownership", detail=str(error)
            )
        return OperationOutcome(
            volume_id=self.request.volume_id,
            status=status or f"extended to {new_size} GiB",
            detail=reason,
        )

    def _message(self, detail: Code) -> UserMessageSpec:
        return UserMessageSpec(
            action=Action.EXTEND_VOLUME.id, detail=detail.id, request_id=self.request.request_id
        )
