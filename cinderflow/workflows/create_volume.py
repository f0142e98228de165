"""Create a volume: place it on a backend, create it there, mark it available (or error)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.scheduler import SchedulerActivities
    from cinderflow.payloads import CreateVolumeInput, OperationOutcome
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
            return await common.release(request.volume_id, "error", reason=placement.reason)
        workflow.set_current_details(f"Creating {volume.size} GiB on backend `{volume.host}`.")
        try:
            update = await workflow.execute_activity_method(
                DriverActivities.create_volume,
                volume,
                **common.driver(volume.host, request.policy, "driver create_volume"),
            )
        except ActivityError as error:
            return await common.release(
                volume.id, "error", reason=f"Volume driver failed: {common.failure_message(error)}"
            )
        return await common.release(volume.id, "available", model_update=update)
