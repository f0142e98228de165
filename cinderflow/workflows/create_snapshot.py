"""Create a snapshot: copy the volume on its backend, mark the snapshot available (or error).

The API holds the volume for the copy (db/ownership.py holds): it cannot be extended or deleted
until this operation's final write, so the snapshot's recorded size is the copied size.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.snapshots import SnapshotActivities
    from cinderflow.payloads import FinalWrite, OperationOutcome
    from cinderflow.status import ResourceKind, SnapshotStatus
    from cinderflow.user_messages import Action, Detail
    from cinderflow.workflows import common
    from cinderflow.workflows.delete_snapshot import SnapshotInput
    from cinderflow.workflows.operation import OperationWorkflow


@workflow.defn(name="CreateSnapshot")
class CreateSnapshot(OperationWorkflow):
    operation = "create snapshot"
    resource = ResourceKind.SNAPSHOT

    @workflow.run
    async def run(self, request: SnapshotInput) -> OperationOutcome:
        return await self.execute(request, self._create(request))

    async def _create(self, request: SnapshotInput) -> OperationOutcome:
        snapshot = await self.step(
            lambda: common.run_control(
                SnapshotActivities.load, request.resource_id, "load snapshot"
            )
        )
        if snapshot.host is None:  # the API refuses this; a reset could still get here
            return await self._failed(snapshot.id, "the volume has no backend")
        self.report(f"Copying volume {snapshot.volume_id} on `{snapshot.host}`.")
        try:
            update = await self.step(
                lambda: workflow.execute_activity_method(
                    DriverActivities.create_snapshot,
                    snapshot,
                    **common.driver(snapshot.host, request.policy, "driver create_snapshot"),
                ),
                effect=lambda update: {**update, "progress": "100%"},
            )
        except ActivityError as error:
            return await self._failed(snapshot.id, common.failure_message(error))
        return await self.finish(
            FinalWrite(
                resource=ResourceKind.SNAPSHOT,
                resource_id=snapshot.id,
                status=SnapshotStatus.AVAILABLE,
                values={**update, "progress": "100%"},
            )
        )

    async def _failed(self, snapshot_id: str, why: str) -> OperationOutcome:
        return await self.fail(
            FinalWrite(
                resource=ResourceKind.SNAPSHOT,
                resource_id=snapshot_id,
                status=SnapshotStatus.ERROR,
                reason=f"Volume driver failed: {why}",
                message=self.message(Action.SNAPSHOT_CREATE, Detail.SNAPSHOT_CREATE_ERROR),
            )
        )
