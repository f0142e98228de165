"""Delete a volume: its snapshots first when cascading, then the volume on its backend, then
its row (or mark it error_deleting)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.keys import KeyActivities
    from cinderflow.activities.snapshots import SnapshotActivities
    from cinderflow.activities.volumes import VolumeActivities
    from cinderflow.payloads import (
        DeleteVolumeInput,
        OperationOutcome,
        ResetOutcome,
        ResetRequest,
    )
    from cinderflow.workflows import common
    from cinderflow.workflows.delete_snapshot import remove_snapshot
    from cinderflow.workflows.reset_volume import ResetGate, ResetInterrupted


@workflow.defn(name="DeleteVolume")
class DeleteVolume:
    def __init__(self) -> None:
        self.resets = ResetGate()

    @workflow.update
    async def reset_status(self, request: ResetRequest) -> ResetOutcome:
        """An admin's reset of a volume stuck in deleting (os-reset_status calls this): the
        driver call is abandoned and the requested status written; the volume stays."""
        return await self.resets.handle(request)

    @reset_status.validator
    def _reset_allowed(self, request: ResetRequest) -> None:
        self.resets.validate()

    @workflow.run
    async def run(self, request: DeleteVolumeInput) -> OperationOutcome:
        try:
            outcome = await self._delete(request)
        except ResetInterrupted:
            return await self.resets.take_over("delete")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return outcome

    async def _delete(self, request: DeleteVolumeInput) -> OperationOutcome:
        volume = await self.resets.guard(
            workflow.execute_activity_method(
                VolumeActivities.load, request.volume_id, **common.control("load volume")
            )
        )
        if request.cascade:
            snapshots = await workflow.execute_activity_method(
                SnapshotActivities.owned_of_volume, volume.id, **common.control("list snapshots")
            )
            for snapshot in snapshots:
                workflow.set_current_details(f"Deleting snapshot {snapshot.id} first.")
                outcome = await self.resets.guard(
                    remove_snapshot(snapshot, request.policy, request.request_id)
                )
                if outcome.status != "deleted":
                    await self.resets.close()
                    return await common.release(
                        volume.id,
                        "error_deleting",
                        reason=f"snapshot {snapshot.id} could not be deleted: {outcome.detail}",
                    )
        if volume.host is not None:  # else it never reached a backend (failed scheduling)
            workflow.set_current_details(f"Deleting from backend `{volume.host}`.")
            try:
                await self.resets.guard(
                    workflow.execute_activity_method(
                        DriverActivities.delete_volume,
                        volume,
                        **common.driver(volume.host, request.policy, "driver delete_volume"),
                    )
                )
            except ActivityError as error:
                await self.resets.close()
                return await common.release(
                    volume.id,
                    "error_deleting",
                    reason=f"Volume driver failed: {common.failure_message(error)}",
                )
        await self.resets.close()
        await workflow.execute_activity_method(
            KeyActivities.delete_volume_key, volume, **common.control("delete encryption key")
        )
        await workflow.execute_activity_method(
            VolumeActivities.destroy, volume.id, **common.control("remove volume record")
        )
        return OperationOutcome(volume_id=volume.id, status="deleted")
