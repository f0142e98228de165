"""Create a volume (empty, from a snapshot, or a clone): place it, create it on its backend,
mark it available (or error).

The API holds a snapshot or a source volume for the copy (db/ownership.py holds), so it cannot
change size or vanish until this operation's final write ends the hold.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.keys import KeyActivities
    from cinderflow.activities.scheduler import SchedulerActivities
    from cinderflow.payloads import (
        FinalWrite,
        OperationOutcome,
        Placement,
        VolumeClone,
        VolumeFromSnapshot,
    )
    from cinderflow.status import VolumeStatus
    from cinderflow.user_messages import Action, Detail
    from cinderflow.workflows import common
    from cinderflow.workflows.operation import OperationInput, OperationWorkflow


class CreateVolumeInput(OperationInput):
    """The volume row (`creating`) says what to create and from what."""


@workflow.defn(name="CreateVolume")
class CreateVolume(OperationWorkflow):
    operation = "create"

    @workflow.run
    async def run(self, request: CreateVolumeInput) -> OperationOutcome:
        return await self.execute(request, self._create_volume(request))

    async def _create_volume(self, request: CreateVolumeInput) -> OperationOutcome:
        self.report("Choosing a backend.")
        placement = await self.step(
            lambda: common.run_control(
                SchedulerActivities.place_volume, request.resource_id, "schedule"
            )
        )
        volume = placement.volume
        if volume is None or volume.host is None:
            return await self.fail(
                FinalWrite(
                    resource_id=request.resource_id,
                    status=VolumeStatus.ERROR,
                    reason=placement.reason,
                    message=self.message(
                        Action.SCHEDULE_ALLOCATE_VOLUME, Detail.NO_BACKEND_AVAILABLE
                    ),
                )
            )
        if volume.encryption is not None:
            self.report("Creating the encryption key.")
            placement.volume = volume = await self.step(
                lambda: common.run_control(
                    KeyActivities.ensure_volume_key, volume.id, "encryption key"
                )
            )
        self.report(f"Creating {volume.size} GiB on backend `{volume.host}`.")
        try:
            update = await self.step(
                lambda: self._create(placement, request), effect=lambda update: update
            )
        except ActivityError as error:
            return await self.fail(
                FinalWrite(
                    resource_id=volume.id,
                    status=VolumeStatus.ERROR,
                    reason=f"Volume driver failed: {common.failure_message(error)}",
                    message=self.message(
                        Action.CREATE_VOLUME_FROM_BACKEND, Detail.DRIVER_FAILED_CREATE
                    ),
                )
            )
        return await self.finish(
            FinalWrite(resource_id=volume.id, status=VolumeStatus.AVAILABLE, values=update)
        )

    async def _create(self, placement: Placement, request: CreateVolumeInput) -> dict[str, Any]:
        volume = placement.volume
        assert volume is not None and volume.host is not None
        options = common.driver(volume.host, request.policy)
        if placement.snapshot is not None:
            return await workflow.execute_activity_method(
                DriverActivities.create_volume_from_snapshot,
                VolumeFromSnapshot(volume=volume, snapshot=placement.snapshot),
                **{**options, "summary": "driver create_volume_from_snapshot"},
            )
        if placement.source_volume is not None:
            return await workflow.execute_activity_method(
                DriverActivities.create_cloned_volume,
                VolumeClone(volume=volume, source=placement.source_volume),
                **{**options, "summary": "driver create_cloned_volume"},
            )
        return await workflow.execute_activity_method(
            DriverActivities.create_volume, volume, **{**options, "summary": "driver create_volume"}
        )
