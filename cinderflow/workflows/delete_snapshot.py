"""Delete a snapshot from its backend, then its row (or mark it error_deleting)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.snapshots import SnapshotActivities
    from cinderflow.drivers.base import SnapshotRef
    from cinderflow.payloads import (
        OperationOutcome,
        OperationPolicy,
        SnapshotInput,
        UserMessageSpec,
    )
    from cinderflow.user_messages import Action, Detail
    from cinderflow.workflows import common


async def remove_snapshot(
    snapshot: SnapshotRef, policy: OperationPolicy, request_id: str | None
) -> OperationOutcome:
    """Delete one owned snapshot everywhere; shared with the cascading volume delete."""
    if snapshot.host is not None:
        try:
            await workflow.execute_activity_method(
                DriverActivities.delete_snapshot,
                snapshot,
                **common.driver(snapshot.host, policy, "driver delete_snapshot"),
            )
        except ActivityError as error:
            return await common.release(
                snapshot.id,
                "error_deleting",
                reason=f"Volume driver failed: {common.failure_message(error)}",
                message=UserMessageSpec(
                    action=Action.SNAPSHOT_DELETE.id,
                    detail=Detail.SNAPSHOT_DELETE_ERROR.id,
                    resource_type="VOLUME_SNAPSHOT",
                    request_id=request_id,
                ),
                finish=SnapshotActivities.finish,
            )
    await workflow.execute_activity_method(
        SnapshotActivities.destroy, snapshot.id, **common.control("remove snapshot record")
    )
    return OperationOutcome(volume_id=snapshot.id, status="deleted")


@workflow.defn(name="DeleteSnapshot")
class DeleteSnapshot:
    @workflow.run
    async def run(self, request: SnapshotInput) -> OperationOutcome:
        snapshot = await workflow.execute_activity_method(
            SnapshotActivities.load, request.snapshot_id, **common.control("load snapshot")
        )
        workflow.set_current_details(f"Deleting from backend `{snapshot.host}`.")
        return await remove_snapshot(snapshot, request.policy, request.request_id)
