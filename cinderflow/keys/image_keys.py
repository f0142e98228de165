"""Keys of uploaded images, deleted once their image is gone.

An encrypted volume's upload gets a clone of its key, named by the image (`os_encrypt_key_id`,
deletion policy `on_image_deletion`). An image service that shares the key manager (Glance
with Barbican, or with the same Vault) deletes the key with the image. The `local` key manager
is cinderflow's alone, so nothing else can: each control worker sweeps the recorded image keys
now and then, and deletes the keys of images the image service no longer has (asking as the
image's owner). An upload still running (its volume holds the clone's record) is skipped; an
image service that cannot be asked keeps every key; a key goes only once its image has been
gone for `image_key_grace` (a misconfigured endpoint must not wipe every image's key at once;
an image seen again resets the clock).
"""

from __future__ import annotations

import logging

from sqlalchemy import delete as sa_delete
from sqlalchemy import update as sa_update
from sqlmodel import select

from cinderflow.db import admin_metadata
from cinderflow.db import volumes as volume_db
from cinderflow.db.engine import Database
from cinderflow.db.models import UploadedImageKey, as_utc, utcnow
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
        rows = list(session.exec(select(UploadedImageKey)))
        uploading = {
            row.key_id
            for row in rows
            if admin_metadata.UPLOAD_KEY_PREFIX + row.image_id
            in volume_db.admin_metadata_of(session, row.volume_id)
        }
    deleted = 0
    for row in rows:
        if row.key_id in uploading:
            continue
        try:
            deleted += _sweep_one(settings, db, keys, row)
        except Exception:  # one key that cannot be deleted must not stop the others'
            log.exception("sweeping the key of image %s failed", row.image_id)
    return deleted


def _sweep_one(settings: Settings, db: Database, keys: KeyService, row: UploadedImageKey) -> int:
    gone = _image_gone(settings, row)
    if gone is None:  # not asked: nothing is learnt
        return 0
    now = utcnow()
    since = as_utc(row.missing_since) if gone and row.missing_since else None
    expired = since is not None and (now - since).total_seconds() >= settings.image_key_grace
    if expired:
        keys.delete(row.project_id, row.key_id)
    with db.transaction() as session:
        if expired:
            session.exec(sa_delete(UploadedImageKey).where(UploadedImageKey.key_id == row.key_id))
        elif gone != (row.missing_since is not None):
            session.exec(
                sa_update(UploadedImageKey)
                .where(UploadedImageKey.key_id == row.key_id)
                .values(missing_since=now if gone else None)
            )
    if expired:
        log.info("deleted key %s of image %s (the image is gone)", row.key_id, row.image_id)
    return int(expired)


def _image_gone(settings: Settings, row: UploadedImageKey) -> bool | None:
    """True: the image service says the image is gone; None: it could not be asked."""
    identity = ImageIdentity(
        user_id=SWEEPER, project_id=row.image_project_id, roles=["admin", "member", "reader"]
    )
    client = ImageClient.from_settings(settings, identity)
    assert client is not None
    try:
        image = client.show(row.image_id)
    except ImageNotFound:
        return True
    except (ImageRefused, ImageServiceError) as error:
        log.debug("image %s not checked: %s", row.image_id, error)
        return None
    return image.get("status") in ("deleted", "killed")
