"""Keys of uploaded images, deleted once their image is gone.

An encrypted volume's upload gets a clone of its key, named by the image (`os_encrypt_key_id`,
deletion policy `on_image_deletion`). An image service that shares the key manager (Glance
with Barbican, or with the same Vault) deletes the key with the image. The `local` key manager
is cinderflow's alone, so nothing else can: each control worker sweeps the recorded image keys
now and then, and deletes the keys of images the image service no longer has (asking as the
image's project). An upload still running (its volume holds the clone's record) is skipped,
and an image service that cannot be asked keeps every key: only a definite "not found" counts.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete as sa_delete
from sqlmodel import select

from cinderflow.db import admin_metadata
from cinderflow.db import volumes as volume_db
from cinderflow.db.engine import Database
from cinderflow.db.models import ImageKey
from cinderflow.images import ImageClient, ImageNotFound, ImageRefused, ImageServiceError
from cinderflow.keys.service import KeyService
from cinderflow.payloads import ImageIdentity
from cinderflow.settings import Settings

log = logging.getLogger(__name__)
SWEEPER = "cinderflow-image-key-sweep"


def sweep(settings: Settings, db: Database, keys: KeyService) -> int:
    """Delete the keys of images that are gone; how many were deleted."""
    if not settings.image_endpoint:
        return 0
    with db.read() as session:
        rows = list(session.exec(select(ImageKey)))
        uploading = {
            row.key_id
            for row in rows
            if admin_metadata.IMAGE_KEY_PREFIX + row.image_id
            in volume_db.admin_metadata_of(session, row.volume_id)
        }
    deleted = 0
    for row in rows:
        if row.key_id in uploading or not _image_gone(settings, row):
            continue
        keys.delete(row.project_id, row.key_id)
        with db.transaction() as session:
            session.exec(sa_delete(ImageKey).where(ImageKey.key_id == row.key_id))
        log.info("deleted key %s of image %s (the image is gone)", row.key_id, row.image_id)
        deleted += 1
    return deleted


def _image_gone(settings: Settings, row: ImageKey) -> bool:
    identity = ImageIdentity(
        user_id=SWEEPER, project_id=row.project_id, roles=["admin", "member", "reader"]
    )
    client = ImageClient.from_settings(settings, identity)
    assert client is not None
    try:
        image = client.show(row.image_id)
    except ImageNotFound:
        return True
    except (ImageRefused, ImageServiceError) as error:
        log.debug("image %s not checked: %s", row.image_id, error)
        return False
    return image.get("status") in ("deleted", "killed")
