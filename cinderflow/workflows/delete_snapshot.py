"""Delete a snapshot from its backend, then its row (or mark it error_deleting)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.snapshots import SnapshotActivities
    from cinderflow.drivers.base import SnapshotRef
    from cinderflow.payloads import FinalWrite, OperationOutcome, OperationPolicy
    from cinderflow.status import ResourceKind, SnapshotStatus
    from cinderflow.user_messages import Action, Detail
    from cinderflow.workflows import common
    from cinderflow.workflows.operation import OperationInput, OperationWorkflow


class SnapshotInput(OperationInput):
    """Input of CreateSnapshot and DeleteSnapshot: the snapshot row says the rest."""


async def remove_from_backend(
    op: OperationWorkflow,
    snapshot: SnapshotRef,
    policy: OperationPolicy,
    *,
    irreversible: bool,
) -> str | None:
    """Delete one owned snapshot on its backend; the driver's failure, or None. A reset or
    cancel cuts it (Stopped), which is not a failure. Shared with the cascading volume delete
    (where a snapshot's delete is not the end of the operation: not `irreversible`)."""
    if snapshot.host is None:
        return None
    try:
        await op.step(
            lambda: workflow.execute_activity_method(
                DriverActivities.delete_snapshot,
                snapshot,
                **common.driver(snapshot.host, policy, "driver delete_snapshot"),
            ),
            irreversible=irreversible,
        )
    except ActivityError as error:
        return f"Volume driver failed: {common.failure_message(error)}"
    return None


def snapshot_failed(op: OperationWorkflow, snapshot_id: str, reason: str) -> FinalWrite:
    """The end of a snapshot its backend would not delete."""
    return FinalWrite(
        resource=ResourceKind.SNAPSHOT,
        resource_id=snapshot_id,
        status=SnapshotStatus.ERROR_DELETING,
        reason=reason,
        message=op.message(Action.SNAPSHOT_DELETE, Detail.SNAPSHOT_DELETE_ERROR).model_copy(
            update={"resource_type": "VOLUME_SNAPSHOT"}
        ),
    )


@workflow.defn(name="DeleteSnapshot")
class DeleteSnapshot(OperationWorkflow):
    operation = "delete snapshot"
    resource = ResourceKind.SNAPSHOT

    @workflow.run
    async def run(self, request: SnapshotInput) -> OperationOutcome:
        return await self.execute(request, self._delete(request))

    async def _delete(self, request: SnapshotInput) -> OperationOutcome:
        snapshot = await self.step(
            lambda: common.run_control(
                SnapshotActivities.load, request.resource_id, "load snapshot"
            )
        )
        self.report(f"Deleting from backend `{snapshot.host}`.")
        failure = await remove_from_backend(self, snapshot, request.policy, irreversible=True)
        if failure:
            return await self.fail(snapshot_failed(self, snapshot.id, failure))
        return await self.finish(
            FinalWrite(resource=ResourceKind.SNAPSHOT, resource_id=snapshot.id, remove=True)
        )
