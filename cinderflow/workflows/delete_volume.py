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
    from cinderflow.payloads import DeleteVolumeInput, OperationOutcome
    from cinderflow.workflows import common
    from cinderflow.workflows.delete_snapshot import remove_snapshot


@workflow.defn(name="DeleteVolume")
class DeleteVolume:
    @workflow.run
    async def run(self, request: DeleteVolumeInput) -> OperationOutcome:
        volume = await workflow.execute_activity_method(
            VolumeActivities.load, request.volume_id, **common.control("load volume")
        )
        if request.cascade:
            snapshots = await workflow.execute_activity_method(
                SnapshotActivities.owned_of_volume, volume.id, **common.control("list snapshots")
            )
            for snapshot in snapshots:
                workflow.set_current_details(f"Deleting snapshot {snapshot.id} first.")
                outcome = await remove_snapshot(snapshot, request.policy, request.request_id)
                if outcome.status != "deleted":
                    return await common.release(
                        volume.id,
                        "error_deleting",
                        reason=f"snapshot {snapshot.id} could not be deleted: {outcome.detail}",
                    )
        if volume.host is not None:  # else it never reached a backend (failed scheduling)
            workflow.set_current_details(f"Deleting from backend `{volume.host}`.")
            try:
                await workflow.execute_activity_method(
                    DriverActivities.delete_volume,
                    volume,
                    **common.driver(volume.host, request.policy, "driver delete_volume"),
                )
            except ActivityError as error:
                return await common.release(
                    volume.id,
                    "error_deleting",
                    reason=f"Volume driver failed: {common.failure_message(error)}",
                )
        await workflow.execute_activity_method(
            KeyActivities.delete_volume_key, volume, **common.control("delete encryption key")
        )
        await workflow.execute_activity_method(
            VolumeActivities.destroy, volume.id, **common.control("remove volume record")
        )
        return OperationOutcome(volume_id=volume.id, status="deleted")
