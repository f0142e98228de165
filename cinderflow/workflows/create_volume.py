"""Create a volume: place it on a backend, create it there, mark it available (or error)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.scheduler import SchedulerActivities
    from cinderflow.payloads import CreateVolumeInput, OperationOutcome, UserMessageSpec
    from cinderflow.user_messages import Action, Detail
    from cinderflow.workflows import common


@workflow.defn(name="CreateVolume")
class CreateVolume:
    @workflow.run
    async def run(self, request: CreateVolumeInput) -> OperationOutcome:
        workflow.set_current_details("Choosing a backend.")
        placement = await workflow.execute_activity_method(
            SchedulerActivities.place_volume, request.volume_id, **common.control("schedule")
        )
        volume = placement.volume
        if volume is None or volume.host is None:
            return await common.release(
                request.volume_id,
                "error",
                reason=placement.reason,
                message=UserMessageSpec(
                    action=Action.SCHEDULE_ALLOCATE_VOLUME.id,
                    detail=Detail.NO_BACKEND_AVAILABLE.id,
                    request_id=request.request_id,
                ),
            )
        workflow.set_current_details(f"Creating {volume.size} GiB on backend `{volume.host}`.")
        try:
            update = await workflow.execute_activity_method(
                DriverActivities.create_volume,
                volume,
                **common.driver(volume.host, request.policy, "driver create_volume"),
            )
        except ActivityError as error:
            return await common.release(
                volume.id,
                "error",
                reason=f"Volume driver failed: {common.failure_message(error)}",
                message=UserMessageSpec(
                    action=Action.CREATE_VOLUME_FROM_BACKEND.id,
                    detail=Detail.DRIVER_FAILED_CREATE.id,
                    request_id=request.request_id,
                ),
            )
        return await common.release(volume.id, "available", model_update=update)
