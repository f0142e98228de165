"""Accept a volume transfer: the volume (and, unless left behind, its snapshots) moves to the
receiving project in one final write.

The API has checked the auth key, reserved the receiving project's quota keyed by the volume
and handed the `awaiting-transfer` volume over. Here: the backend is told (`accept_transfer`,
for drivers that must know), the encryption keys are cloned into the receiving project (undo:
delete the clones), and the final write moves `project_id`/`user_id` of the volume and its
snapshots, gives them their cloned keys, marks the transfer accepted and releases the
reservation (the counted usage moves with the rows). Only then are the sending project's keys
deleted. Any failure, reset or cancel ends the volume back `awaiting-transfer` with its keys,
quota released; a failure leaves a user message for the receiver, whose request it was.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.keys import KeyActivities
    from cinderflow.activities.volumes import VolumeActivities
    from cinderflow.payloads import (
        FinalWrite,
        OperationOutcome,
        TransferAccept,
        TransferKeys,
        TransferRequest,
        VolumeKey,
    )
    from cinderflow.status import VolumeStatus
    from cinderflow.user_messages import Action, Detail
    from cinderflow.workflows import common
    from cinderflow.workflows.operation import OperationInput, OperationWorkflow


MODEL_FIELDS = ("provider_location", "provider_id")
"""What a driver's accept_transfer may change on the volume."""


class AcceptTransferInput(OperationInput):
    transfer_id: str
    project_id: str
    """The receiving project."""
    user_id: str
    no_snapshots: bool = False


@workflow.defn(name="AcceptTransfer")
class AcceptTransfer(OperationWorkflow):
    operation = "accept_transfer"

    @workflow.init
    def __init__(self, request: AcceptTransferInput) -> None:
        super().__init__()
        self.request = request

    @workflow.run
    async def run(self, request: AcceptTransferInput) -> OperationOutcome:
        return await self.execute(request, self._accept(request))

    async def _accept(self, request: AcceptTransferInput) -> OperationOutcome:
        volume = await self.step(
            lambda: common.run_control(VolumeActivities.load, request.resource_id, "load volume")
        )
        assert volume.host is not None
        self.report(f"Handing volume {volume.id} to project {request.project_id}.")
        told = TransferRequest(
            volume=volume, new_user=request.user_id, new_project=request.project_id
        )
        try:
            update = await self.step(
                lambda: workflow.execute_activity_method(
                    DriverActivities.accept_transfer,
                    told,
                    **common.driver(volume.host, request.policy, "driver accept_transfer"),
                )
            )
        except ActivityError as error:
            return await self._back(f"Volume driver failed: {common.failure_message(error)}")
        keys = TransferKeys(
            volume_id=volume.id,
            to_project=request.project_id,
            snapshots=not request.no_snapshots,
        )
        self.undo_with(
            "delete the cloned keys",
            lambda: common.run_control(KeyActivities.delete_transfer_keys, keys, "delete keys"),
        )
        try:
            cloned = await self.step(
                lambda: common.run_control(KeyActivities.clone_for_transfer, keys, "clone keys")
            )
        except (ActivityError, ApplicationError) as error:  # the key manager refused for good
            # (a local activity's own failure reaches the workflow as its ApplicationError)
            said = common.failure_message(error) if isinstance(error, ActivityError) else error
            return await self._back(f"Key manager failed: {said}")
        values: dict[str, Any] = {
            "project_id": request.project_id,
            "user_id": request.user_id,
            **{
                k: v for k, v in (update or {}).items() if k in ("provider_location", "provider_id")
            },
        }
        if cloned.volume_key:
            values["encryption_key_id"] = cloned.volume_key
        outcome = await self.finish(
            FinalWrite(
                resource_id=volume.id,
                status=VolumeStatus.AVAILABLE,
                values=values,
                transfer=TransferAccept(
                    transfer_id=request.transfer_id,
                    project_id=request.project_id,
                    user_id=request.user_id,
                    move_snapshots=not request.no_snapshots,
                    snapshot_keys=cloned.snapshot_keys,
                ),
                reason=f"transferred to project {request.project_id}",
            )
        )
        if outcome.done:
            for key_id in cloned.old_keys:  # the sending project's, no one's now
                old = VolumeKey(project_id=cloned.from_project, key_id=key_id)
                await self.until_done(
                    "deleting the sender's key",
                    lambda old=old: common.run_control(
                        KeyActivities.delete_key, old, "delete the sender's key"
                    ),
                )
        return outcome

    async def _back(self, reason: str) -> OperationOutcome:
        """Not accepted: back to awaiting-transfer, reservation released, clones deleted, a
        user message for the receiver, whose request it was."""
        return await self.fail(
            FinalWrite(
                resource_id=self.request.resource_id,
                status=VolumeStatus.AWAITING_TRANSFER,
                reason=reason,
                message=self.message(
                    Action.TRANSFER_ACCEPT, Detail.DRIVER_FAILED_TRANSFER
                ).model_copy(update={"project_id": self.request.project_id}),
            )
        )
