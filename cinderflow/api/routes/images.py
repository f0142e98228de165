"""Images at the API: the checks of a create from an image, and `os-volume_upload_image`.

A create from an image reads the image from the image service as the user (before its
transaction: no database lock is held across a remote call), then checks it in Cinder's order
with Cinder's messages: active, stored and virtual size and `min_disk` against the volume's
size, a format the backends can read, and (LUKS-image-encryption spec) an encrypted image only
into an encrypted type, refused at once with nothing created.

An upload checks the volume, picks the image's id, and in one transaction compares-and-swaps
`available|in-use -> uploading` and hands the volume to UploadVolumeToImage, which creates the
image record with that id, so a crash at any point leaves either nothing or an operation that
finishes or undoes the upload. The response names the image, as Cinder's does; the API waits a
moment for its record to exist, so a client that reads it at once finds it.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any, Literal

from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cinderflow.api import microversions as mv
from cinderflow.api import policy
from cinderflow.api.context import RequestContext
from cinderflow.api.errors import (
    BadRequest,
    NotFound,
    ServiceUnavailable,
    invalid_input,
    invalid_volume,
)
from cinderflow.api.handover import hand_over, operation_policy
from cinderflow.api.lookups import refuse_busy, visible_volume
from cinderflow.api.routes.types import type_view
from cinderflow.api.routes.volume_actions import ACTIONS, router
from cinderflow.api.routing import ApiRequest
from cinderflow.api.validation import Boolean, StrictModel, check_document
from cinderflow.db import migration_targets
from cinderflow.db import volumes as volume_db
from cinderflow.db.models import OutboxEntry, Volume, VolumeType
from cinderflow.drivers.qemu_img import IMAGE_FORMATS
from cinderflow.images import (
    CORE_FIELDS,
    ENCRYPTION_PROPERTIES,
    NOT_INHERITED_PREFIXES,
    NOT_PROPERTIES,
    ImageClient,
    ImageNotFound,
    ImageRefused,
    ImageServiceError,
    image_source,
    volume_image_metadata,
)
from cinderflow.payloads import ImageIdentity, ImageSource
from cinderflow.settings import Settings
from cinderflow.status import VolumeStatus
from cinderflow.workflows.upload_image import UploadImageInput

GIB = 1024**3
LUKS_HEADER_ALLOWANCE = 2 * 1024**2
"""What a LUKS1 header adds to an image's stored size (QEMU's is 2068480 bytes, cryptsetup's
2 MiB): an encrypted image without `os_decrypt_size` is judged by its payload."""
CONTAINER_FORMATS = ("bare", "luks")
MAX_KEY_ID = 255
IMAGE_WAIT_S = 10.0
"""How long an upload's response waits for its image record to exist."""


def identity(ctx: RequestContext) -> ImageIdentity:
    return ImageIdentity(user_id=ctx.user_id, project_id=ctx.project_id, roles=sorted(ctx.roles))


def image_client(settings: Settings, ctx: RequestContext) -> ImageClient:
    client = ImageClient.from_settings(settings, identity(ctx))
    if client is None:
        raise invalid_input("images need an image service, and no image service is configured.")
    return client


def image_id_of(image_ref: str) -> str:
    """The image id an `imageRef` names: an id, or an image URL ending in one (as Cinder
    takes them). Glance ids are UUIDs; anything else names no image (and never reaches the
    image service's URLs)."""
    last = image_ref.rstrip("/").rsplit("/", 1)[-1]
    try:
        return str(uuid.UUID(last))
    except ValueError:
        raise NotFound(f"Image {image_ref} could not be found.") from None


async def read_image(
    settings: Settings, ctx: RequestContext, image_ref: str
) -> tuple[ImageSource, dict[str, str]]:
    """The image, as the user sees it in the image service: what a create needs of it, and
    the image metadata the volume keeps."""
    client = image_client(settings, ctx)
    image_id = image_id_of(image_ref)
    try:
        found = await run_in_threadpool(client.show, image_id)
        source, metadata = image_source(found), volume_image_metadata(found)
        try:  # the image service's text goes into rows and an operation's input
            check_document([metadata, source.model_dump(mode="json")])
        except BadRequest as refused:
            raise BadRequest(f"Image {image_ref} cannot be used: {refused.message}") from None
        return source, metadata
    except ImageNotFound:
        raise NotFound(f"Image {image_ref} could not be found.") from None
    except ImageRefused as refused:
        if refused.status in (400, 403):  # not the user's to read
            raise NotFound(f"Image {image_ref} could not be found.") from None
        raise ServiceUnavailable(f"The image service refused the request: {refused}") from None
    except ImageServiceError as error:
        raise ServiceUnavailable(f"The image service is unavailable: {error}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as malformed:
        raise ServiceUnavailable(
            f"The image service's answer about image {image_id} is malformed: {malformed!r}"
        ) from None


def needed_bytes(image: ImageSource) -> int:
    """What the guest will see of the image: `os_decrypt_size` for an encrypted one (its
    payload without the LUKS header otherwise), else its virtual size or stored size."""
    if image.encrypted:
        if image.decrypt_size:
            return image.decrypt_size
        if image.raw_luks:
            return max(image.size - LUKS_HEADER_ALLOWANCE, 0)
    return image.virtual_size or image.size


def default_size(image: ImageSource) -> int:
    """A volume's size when only the image is given: the image's, in whole GiB, at least
    its `min_disk`."""
    return max(math.ceil(needed_bytes(image) / GIB), image.min_disk, 1)


def check_image(image: ImageSource, size: int, type_name: str, encrypted_type: bool) -> None:
    """Cinder's checks of an image for a volume of `size` GiB (contract §7, the spec)."""
    if image.status != "active":
        raise invalid_input(f"Image {image.id} is not active.")
    if image.container_format not in CONTAINER_FORMATS:
        raise invalid_input(
            f"Image {image.id} has container format {image.container_format}; volumes are "
            f"made from {' or '.join(CONTAINER_FORMATS)} images."
        )
    readable = image.disk_format in IMAGE_FORMATS or (image.encrypted and image.raw_luks)
    if not readable:
        raise invalid_input(f"Image {image.id} has an unsupported disk format {image.disk_format}.")
    stored = image.size if not image.encrypted else needed_bytes(image)
    if math.ceil(stored / GIB) > size:
        raise invalid_input(
            f"Size of specified image {math.ceil(stored / GIB)}GB is larger than volume size "
            f"{size}GB."
        )
    virtual = needed_bytes(image)
    if math.ceil(virtual / GIB) > size:
        raise invalid_input(
            f"Image virtual size is {math.ceil(virtual / GIB)}GB and doesn't fit in a volume of "
            f"size {size}GB."
        )
    if image.min_disk > size:
        raise invalid_input(
            f"Volume size {size}GB cannot be smaller than the image minDisk size "
            f"{image.min_disk}GB."
        )
    if image.encrypted and not encrypted_type:
        raise invalid_input(
            f"Image {image.id} is encrypted: the volume type {type_name} must have an "
            "encryption type (an unencrypted volume would hold the image's ciphertext)."
        )
    if image.encrypted and not image.key_id:
        raise invalid_input(
            f"Image {image.id} is encrypted but names no secret (os_encrypt_key_id)."
        )
    if image.encrypted and image.disk_format not in ("raw", "luks", "qcow2"):
        raise invalid_input(
            f"Image {image.id} is encrypted as {image.disk_format}; encrypted images are raw "
            "LUKS or qcow2 with LUKS."
        )


# Upload --------------------------------------------------------------------------------------


class Upload(StrictModel):
    image_name: str = Field(min_length=1, max_length=255)
    force: Boolean | None = None
    disk_format: Literal["raw", "vmdk", "vdi", "qcow2", "vhd", "vhdx", "ploop"] | None = None
    container_format: Literal["bare", "luks"] | None = None
    visibility: Literal["community", "public", "private", "shared"] | None = None
    protected: Boolean | None = None


class UploadBody(StrictModel):
    upload: Upload = Field(alias="os-volume_upload_image")


UPLOADABLE = (VolumeStatus.AVAILABLE, VolumeStatus.IN_USE)


@router.action(ACTIONS, "os-volume_upload_image", body=UploadBody)
async def upload_image(req: ApiRequest) -> Response:
    """Upload a volume's data as a new image (Cinder's copy_volume_to_image)."""
    assert isinstance(req.body, UploadBody)
    body = req.body.upload
    since_31 = req.at_least(mv.UPLOAD_IMAGE_VISIBILITY)
    if not since_31 and (body.visibility is not None or body.protected is not None):
        raise BadRequest("Invalid input for field/attribute os-volume_upload_image.")
    settings = req.services.settings
    client = image_client(settings, req.ctx)
    disk_format = body.disk_format or "raw"
    if disk_format not in IMAGE_FORMATS:
        raise invalid_input(f"Disk format {disk_format} is not supported for uploads.")
    image_id = str(uuid.uuid4())

    def run() -> tuple[OutboxEntry, dict[str, Any]]:
        with req.services.db.transaction() as session:
            volume = visible_volume(session, req.ctx, req.path_params["volume_id"], for_update=True)
            policy.authorize(
                req.ctx, "volume_extension:volume_actions:upload_image", volume.project_id
            )
            if body.visibility == "public":
                policy.authorize(
                    req.ctx, "volume_extension:volume_actions:upload_public", volume.project_id
                )
            _check_uploadable(settings, volume, bool(body.force))
            vtype = session.get(VolumeType, volume.volume_type_id)
            assert vtype is not None
            if volume.encryption_key_id is not None and disk_format != "raw":
                raise invalid_input(
                    "An encrypted volume is uploaded as a raw LUKS image: disk_format must be raw."
                )
            if volume.encryption_key_id is None and body.container_format == "luks":
                raise invalid_input("Only an encrypted volume is uploaded in a luks container.")
            refuse_busy(session, volume, "upload")
            record = {
                "name": body.image_name,
                "disk_format": disk_format,
                "container_format": body.container_format or "bare",
                "visibility": body.visibility or "private",
                "protected": bool(body.protected),
                **_inherited(volume_db.image_metadata_of(session, [volume.id]).get(volume.id, {})),
            }
            payload = UploadImageInput(
                resource_id=volume.id,
                image_id=image_id,
                image=record,
                identity=identity(req.ctx),
                policy=operation_policy(settings),
                request_id=req.ctx.request_id,
            )
            entry = hand_over(
                session,
                settings,
                "upload_image",
                volume,
                payload,
                status=VolumeStatus.UPLOADING,
                expected={"status": volume.status},
            )
            assert entry is not None, "the row is locked and was checked above"
            answer = {
                "id": volume.id,
                "updated_at": volume.updated_at.isoformat() if volume.updated_at else None,
                "status": VolumeStatus.UPLOADING,
                "display_description": volume.description,
                "size": volume.size,
                "volume_type": type_view(
                    req, vtype, volume_db.extra_specs(session, vtype.id), mode="create"
                ),
                "image_id": image_id,
                "container_format": record["container_format"],
                "disk_format": disk_format,
                "image_name": body.image_name,
            }
            if since_31:
                answer.update(visibility=record["visibility"], protected=record["protected"])
            return entry, answer

    entry, answer = await run_in_threadpool(run)
    await req.services.outbox.start(entry)
    await _wait_for_record(client, image_id)
    return JSONResponse({"os-volume_upload_image": answer}, status_code=202)


def _check_uploadable(settings: Settings, volume: Volume, force: bool) -> None:
    """Cinder's checks: `available`, or `in-use` with `force` where the deployment allows
    forced uploads (enable_force_upload)."""
    if force and volume.status == VolumeStatus.IN_USE and not settings.enable_force_upload:
        raise invalid_volume(
            "Unable to upload an in-use volume: force uploads are not enabled "
            "(enable_force_upload)."
        )
    allowed = UPLOADABLE if force else (VolumeStatus.AVAILABLE,)
    if volume.status not in allowed or migration_targets.is_target(volume):
        raise invalid_volume(
            f"Volume {volume.id} status must be {' or '.join(allowed)} to upload it to an "
            f"image, but current status is: {volume.status}."
        )


def _inherited(image_metadata: dict[str, str]) -> dict[str, str]:
    """The properties of the image a volume was made from that an image of it keeps (Cinder
    copies the volume's glance metadata); not the old image's identity or encryption."""
    dropped = {"image_id", "image_name", *CORE_FIELDS, *ENCRYPTION_PROPERTIES, *NOT_PROPERTIES}
    return {
        k: v
        for k, v in image_metadata.items()
        if k not in dropped and not k.startswith(NOT_INHERITED_PREFIXES)
    }


async def _wait_for_record(client: ImageClient, image_id: str) -> None:
    """Wait (briefly) until the operation has created the image record; an image service
    that is slow or away only delays the answer, the operation goes on regardless."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + IMAGE_WAIT_S
    while loop.time() < deadline:
        try:
            await run_in_threadpool(client.show, image_id)
            return
        except (ImageRefused, ImageServiceError, ValueError):
            await asyncio.sleep(0.1)
