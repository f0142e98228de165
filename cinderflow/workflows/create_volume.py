"""Create a volume (empty, from a snapshot, or a clone): place it, create it on its backend,
mark it available (or error)."""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.keys import KeyActivities
    from cinderflow.activities.scheduler import SchedulerActivities
    from cinderflow.payloads import (
        CreateVolumeInput,
        OperationOutcome,
        Placement,
        ResetOutcome,
        ResetRequest,
        UserMessageSpec,
        VolumeClone,
        VolumeFromSnapshot,
    )
    from cinderflow.user_messages import Action, Code, Detail
    from cinderflow.workflows import common
    from cinderflow.workflows.reset_volume import ResetGate, ResetInterrupted


@workflow.defn(name="CreateVolume")
class CreateVolume:
    def __init__(self) -> None:
        self.resets = ResetGate()

    @workflow.update
    async def reset_status(self, request: ResetRequest) -> ResetOutcome:
        """An admin's reset of a volume still being created (os-reset_status calls this):
        the driver call is abandoned and the requested status written."""
        return await self.resets.handle(request)

    @reset_status.validator
    def _reset_allowed(self, request: ResetRequest) -> None:
        self.resets.validate()

    @workflow.run
    async def run(self, request: CreateVolumeInput) -> OperationOutcome:
        try:
            outcome = await self._create_volume(request)
        except ResetInterrupted:
            return await self.resets.take_over("create")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return outcome

    async def _release(self, volume_id: str, status: str, **kw: Any) -> OperationOutcome:
        await self.resets.close()
        return await common.release(volume_id, status, **kw)

    async def _create_volume(self, request: CreateVolumeInput) -> OperationOutcome:
        workflow.set_current_details("Choosing a backend.")
        placement = await self.resets.guard(
            workflow.execute_activity_method(
                SchedulerActivities.place_volume, request.volume_id, **common.control("schedule")
            )
        )
        volume = placement.volume
        if volume is None or volume.host is None:
            return await self._release(
                request.volume_id,
                "error",
                reason=placement.reason,
                message=self._message(
                    request, Action.SCHEDULE_ALLOCATE_VOLUME, Detail.NO_BACKEND_AVAILABLE
                ),
            )
        if volume.encryption is not None:
            workflow.set_current_details("Creating the encryption key.")
            placement.volume = volume = await self.resets.guard(
                workflow.execute_activity_method(
                    KeyActivities.ensure_volume_key, volume.id, **common.control("encryption key")
                )
            )
        workflow.set_current_details(f"Creating {volume.size} GiB on backend `{volume.host}`.")
        try:
            update = await self.resets.guard(self._create(placement, request))
        except ActivityError as error:
            return await self._release(
                volume.id,
                "error",
                reason=f"Volume driver failed: {common.failure_message(error)}",
                message=self._message(
                    request, Action.CREATE_VOLUME_FROM_BACKEND, Detail.DRIVER_FAILED_CREATE
                ),
            )
        return await self._release(volume.id, "available", model_update=update)

    async def _create(self, placement: Placement, request: CreateVolumeInput) -> dict[str, Any]:
        volume = placement.volume
        assert volume is not None and volume.host is not None
        options = common.driver(volume.host, request.policy)
        if placement.snapshot is not None:
            return await workflow.execute_activity_method(
                DriverActivities.create_volume_from_snapshot,
                VolumeFromSnapshot(volume=volume, snapshot=placement.snapshot),
                **{**options, "summary": "driver create_volume_from_snapshot"},
            )
        if placement.source_volume is not None:
            return await workflow.execute_activity_method(
                DriverActivities.create_cloned_volume,
                VolumeClone(volume=volume, source=placement.source_volume),
                **{**options, "summary": "driver create_cloned_volume"},
            )
        return await workflow.execute_activity_method(
            DriverActivities.create_volume, volume, **{**options, "summary": "driver create_volume"}
        )

    @staticmethod
    def _message(request: CreateVolumeInput, action: Code, detail: Code) -> UserMessageSpec:
        return UserMessageSpec(action=action.id, detail=detail.id, request_id=request.request_id)
