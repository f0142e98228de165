"""Create a snapshot: copy the volume on its backend, mark the snapshot available (or error)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.snapshots import SnapshotActivities
    from cinderflow.payloads import OperationOutcome, SnapshotInput, UserMessageSpec
    from cinderflow.user_messages import Action, Detail
    from cinderflow.workflows import common


@workflow.defn(name="CreateSnapshot")
class CreateSnapshot:
    @workflow.run
    async def run(self, request: SnapshotInput) -> OperationOutcome:
        snapshot = await workflow.execute_activity_method(
            SnapshotActivities.load, request.snapshot_id, **common.control("load snapshot")
        )
        if snapshot.host is None:  # the API refuses this; a reset could still get here
            return await self._failed(request, snapshot.id, "the volume has no backend")
        workflow.set_current_details(f"Copying volume {snapshot.volume_id} on `{snapshot.host}`.")
        try:
            update = await workflow.execute_activity_method(
                DriverActivities.create_snapshot,
                snapshot,
                **common.driver(snapshot.host, request.policy, "driver create_snapshot"),
            )
        except ActivityError as error:
            return await self._failed(request, snapshot.id, common.failure_message(error))
        return await common.release(
            snapshot.id,
            "available",
            model_update={**update, "progress": "100%"},
            finish=SnapshotActivities.finish,
        )

    async def _failed(self, request: SnapshotInput, snapshot_id: str, why: str) -> OperationOutcome:
        return await common.release(
            snapshot_id,
            "error",
            reason=f"Volume driver failed: {why}",
            message=UserMessageSpec(
                action=Action.SNAPSHOT_CREATE.id,
                detail=Detail.SNAPSHOT_CREATE_ERROR.id,
                resource_type="VOLUME_SNAPSHOT",
                request_id=request.request_id,
            ),
            finish=SnapshotActivities.finish,
        )
