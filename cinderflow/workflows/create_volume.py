"""Create a volume (empty, from a snapshot, a clone, or from an image): place it, create it on
its backend, mark it available (or error).

The API holds a snapshot or a source volume for the copy (db/ownership.py holds), so it cannot
change size or vanish until this operation's final write ends the hold.

From an image, the volume is `downloading` while its backend's worker downloads the image and
the driver makes the volume from it (converted, encrypted or its ciphertext copied, per the
image's encryption). A failure, a reset or a cancel undoes what was made (the backend's file,
the volume's key, a clone of the image's secret), so no partial volume or stray key is left.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.keys import KeyActivities
    from cinderflow.activities.scheduler import SchedulerActivities
    from cinderflow.activities.volumes import VolumeActivities
    from cinderflow.db.admin_metadata import SOURCE_IMAGE_KEY_ID
    from cinderflow.drivers.base import VolumeRef
    from cinderflow.payloads import (
        FinalWrite,
        ImageIdentity,
        ImageSource,
        ImageToVolume,
        OperationOutcome,
        Placement,
        StatusChange,
        VolumeClone,
        VolumeFromSnapshot,
    )
    from cinderflow.status import VolumeStatus
    from cinderflow.user_messages import Action, Detail
    from cinderflow.workflows import common
    from cinderflow.workflows.operation import OperationInput, OperationWorkflow


class CreateVolumeInput(OperationInput):
    """The volume row (`creating`) says what to create and from what; an image source comes
    in the input, as the API read it from the image service, with who asked."""

    image: ImageSource | None = None
    identity: ImageIdentity | None = None


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
            if request.image is not None:
                self.undo_with("the volume's key", lambda: self._remove_key(volume.id))
            try:
                placement.volume = volume = await self.step(
                    lambda: common.run_control(
                        KeyActivities.ensure_volume_key, volume.id, "encryption key"
                    )
                )
            except (ActivityError, ApplicationError) as error:
                if common.is_lost_ownership(error):
                    raise
                return await self._key_failed(request, volume.id, error)
        if request.image is not None:
            return await self._from_image(request, volume)
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

    async def _from_image(self, request: CreateVolumeInput, volume: VolumeRef) -> OperationOutcome:
        image, host = request.image, volume.host
        assert image is not None and request.identity is not None and host is not None
        await self.step(
            lambda: common.run_control(
                VolumeActivities.set_status,
                StatusChange(volume_id=volume.id, status=VolumeStatus.DOWNLOADING),
                "downloading",
            )
        )
        self.undo_with("the volume's data", lambda: self._delete_data(request, volume))
        self.copying = f"Copying image {image.id} into {volume.size} GiB on `{host}`."
        self.report(self.copying, 0)
        copy = ImageToVolume(volume=volume, image=image, identity=request.identity)
        try:
            update = await self.step(
                lambda: workflow.execute_activity_method(
                    DriverActivities.copy_image_to_volume,
                    copy,
                    **common.driver(host, request.policy, "driver copy_image_to_volume"),
                ),
                stoppable=True,
                effect=lambda update: update,
            )
        except ActivityError as error:
            return await self.fail(
                FinalWrite(
                    resource_id=volume.id,
                    status=VolumeStatus.ERROR,
                    reason=f"Image {image.id} copy failed: {common.failure_message(error)}",
                    admin_metadata=[SOURCE_IMAGE_KEY_ID],
                    message=self.message(Action.COPY_IMAGE_TO_VOLUME, Detail.IMAGE_COPY_FAILED),
                )
            )
        finally:
            self.copying = ""
        return await self.finish(
            FinalWrite(
                resource_id=volume.id,
                status=VolumeStatus.AVAILABLE,
                values={**update, "bootable": True},
                admin_metadata=[SOURCE_IMAGE_KEY_ID],
            )
        )

    async def _key_failed(
        self, request: CreateVolumeInput, volume_id: str, error: ActivityError | ApplicationError
    ) -> OperationOutcome:
        """The key could not be made: its source (an image's secret, a snapshot's or a
        volume's key) is gone or not the caller's to read."""
        action = Action.COPY_IMAGE_TO_VOLUME if request.image else Action.CREATE_VOLUME_FROM_BACKEND
        return await self.fail(
            FinalWrite(
                resource_id=volume_id,
                status=VolumeStatus.ERROR,
                reason=f"The volume's key could not be made: {common.error_message(error)}",
                admin_metadata=[SOURCE_IMAGE_KEY_ID],
                message=self.message(action, Detail.KEY_UNAVAILABLE),
            )
        )

    def _remove_key(self, volume_id: str) -> Any:
        return common.run_control(KeyActivities.remove_volume_key, volume_id, "remove the key")

    def _delete_data(self, request: CreateVolumeInput, volume: VolumeRef) -> Any:
        assert volume.host is not None
        return workflow.execute_activity_method(
            DriverActivities.delete_volume,
            volume,
            **common.driver(volume.host, request.policy, "driver delete_volume (undo)"),
        )
