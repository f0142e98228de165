"""Delete a volume: its snapshots first when cascading, then the volume on its backend, its
key, then its row (or mark it error_deleting).

A reset or cancel may stop it anywhere before the volume's own backend object is gone. The
snapshots it has not deleted return to their previous status, the one whose deletion was cut
short becomes `error` (its backend object may be half gone), and nothing is reported as a
failure that was only a stop.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.keys import KeyActivities
    from cinderflow.activities.snapshots import SnapshotActivities
    from cinderflow.activities.volumes import VolumeActivities
    from cinderflow.payloads import FinalWrite, OperationOutcome
    from cinderflow.status import ResourceKind, SnapshotStatus, VolumeStatus
    from cinderflow.workflows import common
    from cinderflow.workflows.delete_snapshot import remove_from_backend, snapshot_failed
    from cinderflow.workflows.operation import OperationInput, OperationWorkflow


class DeleteVolumeInput(OperationInput):
    cascade: bool = False
    """Delete the volume's snapshots first (the API gave them to this workflow)."""


@workflow.defn(name="DeleteVolume")
class DeleteVolume(OperationWorkflow):
    operation = "delete"

    def __init__(self) -> None:
        super().__init__()
        self.deleting_snapshot: str | None = None

    @workflow.run
    async def run(self, request: DeleteVolumeInput) -> OperationOutcome:
        return await self.execute(request, self._delete(request))

    def stopped_write(self, write: FinalWrite) -> FinalWrite:
        if self.deleting_snapshot is not None:
            write.snapshots[self.deleting_snapshot] = SnapshotStatus.ERROR
        return write

    async def _delete(self, request: DeleteVolumeInput) -> OperationOutcome:
        volume = await self.step(
            lambda: common.run_control(VolumeActivities.load, request.resource_id, "load volume")
        )
        if request.cascade:
            snapshots = await self.step(
                lambda: common.run_control(
                    SnapshotActivities.owned_of_volume, volume.id, "list snapshots"
                )
            )
            for number, snapshot in enumerate(snapshots, 1):
                self.report(f"Deleting snapshot {snapshot.id} first ({number}/{len(snapshots)}).")
                self.deleting_snapshot = snapshot.id
                failure = await remove_from_backend(
                    self, snapshot, request.policy, irreversible=False
                )
                if failure:
                    await self.write_part(snapshot_failed(self, snapshot.id, failure))
                    self.deleting_snapshot = None
                    return await self.fail(
                        FinalWrite(
                            resource_id=volume.id,
                            status=VolumeStatus.ERROR_DELETING,
                            reason=f"snapshot {snapshot.id} could not be deleted: {failure}",
                        )
                    )
                await self.write_part(
                    FinalWrite(resource=ResourceKind.SNAPSHOT, resource_id=snapshot.id, remove=True)
                )
                self.deleting_snapshot = None
        if volume.host is not None:  # else it never reached a backend (failed scheduling)
            self.report(f"Deleting from backend `{volume.host}`.")
            try:
                await self.step(
                    lambda: workflow.execute_activity_method(
                        DriverActivities.delete_volume,
                        volume,
                        **common.driver(volume.host, request.policy, "driver delete_volume"),
                    ),
                    irreversible=True,  # the backend object is gone: the delete must end
                )
            except ActivityError as error:
                return await self.fail(
                    FinalWrite(
                        resource_id=volume.id,
                        status=VolumeStatus.ERROR_DELETING,
                        reason=f"Volume driver failed: {common.failure_message(error)}",
                    )
                )
        await self.close()  # nothing on a backend (never placed), or it is gone
        await self.shielded(
            common.run_control(KeyActivities.delete_volume_key, volume, "delete encryption key")
        )
        return await self.finish(FinalWrite(resource_id=volume.id, remove=True))
