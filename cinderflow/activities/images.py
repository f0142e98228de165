"""Image steps: moving image data on a backend worker, and image records on the control queue.

On the backend (`ImageStaging`, used by the driver activities `driver.copy_image_to_volume`
and `driver.copy_volume_to_image`): an image is downloaded into a private staging file of the
worker (`image_conversion_dir`), checked against the image's checksum, handed to the driver
in the format the image service names, and removed when the step ends. Each attempt's file is
its own (`image-<volume>.<attempt>`), and an attempt first removes what earlier ones left (a
worker killed mid-download), so a retried step starts its copy again and finishes once.

On the control queue (`ImageActivities`): the image record an upload fills is created with
the id the API chose (a retry finds its own) and deleted by the upload's compensation.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import Executor
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from cinderflow.activities.group import ActivityGroup
from cinderflow.drivers.base import BackendTemporarilyUnavailable, ImageFile, VolumeDriverError
from cinderflow.drivers.call import current_call
from cinderflow.files import private_directory
from cinderflow.images import ImageClient, ImageRefused, ImageServiceError, private_file
from cinderflow.payloads import ImageIdentity, ImageRecord, ImageToVolume, VolumeToImage
from cinderflow.settings import Settings
from cinderflow.threads import run_blocking

IMAGE_REFUSED = "ImageRefused"


def conversion_dir(settings: Settings) -> Path:
    return settings.image_conversion_dir or settings.data_dir / "image-conversion"


class ImageStaging:
    """Where a backend worker keeps images while a driver reads or writes them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.directory = conversion_dir(settings) / "staging"
        """A directory of cinderflow's own in the configured one (which may be shared)."""

    def client(self, identity: ImageIdentity) -> ImageClient:
        client = ImageClient.from_settings(self.settings, identity)
        if client is None:
            raise VolumeDriverError("no image service is configured (image_endpoint)")
        return client

    def discard(self, owner: str) -> None:
        """Remove every staging file of `owner` (a deleted volume's: a worker killed while it
        downloaded leaves one that no later attempt of its step removes)."""
        if self.directory.is_dir():
            for leftover in self.directory.glob(f"image-{owner}.*"):
                leftover.unlink(missing_ok=True)

    def _file(self, owner: str) -> Path:
        """This attempt's staging file for `owner` (a volume), after removing earlier ones."""
        private_directory(self.directory)
        self.discard(owner)
        return private_file(self.directory / f"image-{owner}.{current_call().attempt}")

    @contextlib.contextmanager
    def downloaded(self, request: ImageToVolume):  # type: ignore[no-untyped-def]
        """The image's data in a staging file for the length of the `with` (the download is
        the first half of the call's progress)."""
        call = current_call()
        image = request.image
        path = self._file(request.volume.id)
        try:
            call.within(0.0, 0.5)
            total = max(image.size, 1)
            digest = _image_call(
                lambda: self.client(request.identity).download(
                    image.id,
                    path,
                    progress=lambda done: call.progress(done, total),
                    stop=call.cancelled,
                )
            )
            if image.checksum and digest != image.checksum:
                raise VolumeDriverError(
                    f"the image's data does not match its checksum ({digest} != {image.checksum})"
                )
            call.within(0.5, 1.0)
            yield ImageFile(
                path=str(path),
                disk_format=image.disk_format,
                encrypted=image.encrypted,
                key_id=None if image.raw_luks else image.key_id,
            )
        finally:
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def to_upload(self, request: VolumeToImage):  # type: ignore[no-untyped-def]
        """A staging file the driver writes the volume into (the first half of the call);
        uploaded as the image's data unless the image already has it."""
        call = current_call()
        path = self._file(request.volume.id)
        try:
            call.within(0.0, 0.5)
            yield ImageFile(path=str(path), disk_format=request.disk_format)
            call.within(0.5, 1.0)
            client = self.client(request.identity)
            status = _image_call(lambda: client.show(request.image_id))["status"]
            if status == "active":
                return  # an earlier attempt uploaded it and was cut before it could say so
            if status != "queued":  # `saving`: a killed attempt's upload is still ending
                raise BackendTemporarilyUnavailable(
                    f"image {request.image_id} is {status}; its upload is tried again"
                )
            total = max(os.stat(path).st_size, 1)
            _image_call(
                lambda: client.upload(
                    request.image_id,
                    path,
                    progress=lambda done: call.progress(done, total),
                    stop=call.cancelled,
                )
            )
        finally:
            path.unlink(missing_ok=True)


def _image_call(work):  # type: ignore[no-untyped-def]
    """The image service's failures as a driver's: a refusal ends the step, an outage or a
    5xx is tried again."""
    try:
        return work()
    except ImageRefused as refused:
        raise VolumeDriverError(str(refused)) from refused
    except ImageServiceError as error:
        raise BackendTemporarilyUnavailable(str(error)) from error


class ImageActivities(ActivityGroup):
    """Image records, on the control queue: created for an upload, deleted by its undo."""

    def __init__(self, settings: Settings, executor: Executor | None = None) -> None:
        self.settings = settings
        self.executor = executor

    def _client(self, identity: ImageIdentity) -> ImageClient:
        client = ImageClient.from_settings(self.settings, identity)
        if client is None:
            raise ApplicationError(
                "no image service is configured (image_endpoint)",
                type=IMAGE_REFUSED,
                non_retryable=True,
            )
        return client

    @activity.defn(name="images.create_image")
    async def create_image(self, record: ImageRecord) -> str:
        """Create the upload's image record (queued); its status once created."""

        def create() -> str:
            body = {**record.body, "id": record.image_id}
            return str(self._client(record.identity).create(body).get("status", ""))

        return await run_blocking(self.executor, _image_refusals_final, create)

    @activity.defn(name="images.protect_image")
    async def protect_image(self, record: ImageRecord) -> None:
        """Make the uploaded image protected (as asked): only once it is complete, so that
        the upload's undo could always delete it."""
        await run_blocking(
            self.executor,
            _image_refusals_final,
            lambda: self._client(record.identity).set_protected(record.image_id, True),
        )

    @activity.defn(name="images.delete_image")
    async def delete_image(self, record: ImageRecord) -> None:
        """Delete the upload's image record (gone already is fine), claiming its id first:
        a create of it cut in flight can then never land after this."""
        await run_blocking(
            self.executor,
            _image_refusals_final,
            lambda: self._client(record.identity).delete(record.image_id, claim=True),
        )


def _image_refusals_final(work):  # type: ignore[no-untyped-def]
    try:
        return work()
    except ImageRefused as refused:
        raise ApplicationError(str(refused), type=IMAGE_REFUSED, non_retryable=True) from None
