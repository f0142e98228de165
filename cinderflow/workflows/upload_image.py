"""Upload a volume to an image (`os-volume_upload_image`): the volume is `uploading` while its
backend's worker writes it into a file and sends that to the image service as the data of an
image record this operation creates (with the id the API chose and answered with).

An encrypted volume goes as a raw LUKS image under a clone of its key (the image's own, with
the spec's `os_encrypt_*` properties and Cinder's legacy `cinder_encryption_*` ones, deletion
policy `on_image_deletion`). Undos, registered before their steps: the image record is
deleted and the cloned key too, so a failed, reset or cancelled upload leaves no image (none
`active` with half its data) and no stray key. The volume ends in the status it had.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.images import ImageActivities
    from cinderflow.activities.keys import KeyActivities
    from cinderflow.activities.volumes import VolumeActivities
    from cinderflow.db.admin_metadata import UPLOAD_KEY_PREFIX
    from cinderflow.drivers.base import VolumeRef
    from cinderflow.payloads import (
        FinalWrite,
        ImageIdentity,
        ImageKeyClone,
        ImageRecord,
        OperationOutcome,
        VolumeToImage,
    )
    from cinderflow.user_messages import Action, Detail
    from cinderflow.workflows import common
    from cinderflow.workflows.operation import OperationInput, OperationWorkflow

GIB = 1024**3
KEY_DELETION_POLICY = "on_image_deletion"
ENCRYPT_FORMAT = "LUKSv1"
"""The file backend's LUKS is QEMU's LUKS1 (the spec's example value)."""


class UploadImageInput(OperationInput):
    image_id: str
    """Chosen by the API (and answered to the client): a retried create finds its own."""
    image: dict[str, Any]
    """The image record to create: name, formats, visibility, protected, properties."""
    identity: ImageIdentity


@workflow.defn(name="UploadVolumeToImage")
class UploadVolumeToImage(OperationWorkflow):
    operation = "upload_image"

    @workflow.run
    async def run(self, request: UploadImageInput) -> OperationOutcome:
        return await self.execute(request, self._upload(request))

    async def _upload(self, request: UploadImageInput) -> OperationOutcome:
        self.report("Reading the volume.")
        volume = await self.step(
            lambda: common.run_control(VolumeActivities.load, request.resource_id, "load volume")
        )
        body = dict(request.image)
        if volume.encryption_key_id is not None:
            key = ImageKeyClone(
                volume_id=volume.id,
                image_id=request.image_id,
                image_project_id=request.identity.project_id,
            )
            self.undo_with("the image's key", lambda: self._delete_key(key))
            self.report("Cloning the volume's key for the image.")
            try:
                key_id = await self.step(
                    lambda: common.run_control(KeyActivities.clone_for_image, key, "clone key")
                )
            except (ActivityError, ApplicationError) as error:
                if common.is_lost_ownership(error):
                    raise
                return await self._failed(volume, error, Detail.KEY_UNAVAILABLE)
            body.update(encryption_properties(key_id, volume.size))
        protected = bool(body.pop("protected", False))  # set once the image is complete
        record = ImageRecord(image_id=request.image_id, body=body, identity=request.identity)
        self.undo_with("the image", lambda: self._delete_image(record))
        self.report(f"Creating image {request.image_id}.")
        try:  # a create cut in flight cannot outlive the undo: it claims the id first
            await self.step(
                lambda: common.run_control(ImageActivities.create_image, record, "create image")
            )
        except (ActivityError, ApplicationError) as error:
            if common.is_lost_ownership(error):
                raise
            return await self._failed(volume, error, Detail.FAILED_TO_UPLOAD_VOLUME)
        host = volume.host
        assert host is not None
        self.undo_with("the staged data", lambda: self._discard_staging(request, volume))
        self.copying = f"Uploading {volume.size} GiB from `{host}` to image {request.image_id}."
        self.report(self.copying, 0)
        upload = VolumeToImage(
            volume=volume,
            image_id=request.image_id,
            disk_format=str(body.get("disk_format", "raw")),
            identity=request.identity,
        )
        try:
            await self.step(
                lambda: workflow.execute_activity_method(
                    DriverActivities.copy_volume_to_image,
                    upload,
                    **common.driver(host, request.policy, "driver copy_volume_to_image"),
                ),
                stoppable=True,
            )
            if protected:
                await self.step(
                    lambda: common.run_control(ImageActivities.protect_image, record, "protect")
                )
        except (ActivityError, ApplicationError) as error:
            if common.is_lost_ownership(error):
                raise
            return await self._failed(volume, error, Detail.FAILED_TO_UPLOAD_VOLUME)
        finally:
            self.copying = ""
        return await self.finish(
            FinalWrite(
                resource_id=volume.id,
                previous=True,
                admin_metadata=[UPLOAD_KEY_PREFIX + request.image_id],
                reason=f"uploaded to image {request.image_id}",
            )
        )

    async def _failed(
        self, volume: VolumeRef, error: ActivityError | ApplicationError, detail: Any
    ) -> OperationOutcome:
        return await self.fail(
            FinalWrite(
                resource_id=volume.id,
                previous=True,
                reason=f"Upload to image failed: {common.error_message(error)}",
                message=self.message(Action.COPY_VOLUME_TO_IMAGE, detail),
            )
        )

    def _delete_key(self, key: ImageKeyClone) -> Any:
        """Undo of the key's clone (it removes its record too)."""
        return common.run_control(KeyActivities.delete_image_key, key, "delete the image's key")

    def _discard_staging(self, request: UploadImageInput, volume: VolumeRef) -> Any:
        assert volume.host is not None
        return workflow.execute_activity_method(
            DriverActivities.discard_image_staging,
            volume.id,
            **common.driver(volume.host, request.policy, "discard staged data (undo)"),
        )

    def _delete_image(self, record: ImageRecord) -> Any:
        return common.run_control(ImageActivities.delete_image, record, "delete the image")


def encryption_properties(key_id: str, size_gib: int) -> dict[str, str]:
    """What an encrypted image says of itself (the LUKS-image-encryption spec's properties,
    and Cinder's legacy ones, still read by older consumers)."""
    return {
        "os_encrypt_format": ENCRYPT_FORMAT,
        "os_encrypt_key_id": key_id,
        "os_encrypt_key_deletion_policy": KEY_DELETION_POLICY,
        "os_decrypt_size": str(size_gib * GIB),
        "cinder_encryption_key_id": key_id,
        "cinder_encryption_key_deletion_policy": KEY_DELETION_POLICY,
    }
