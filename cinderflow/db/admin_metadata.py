"""Volume admin metadata: keys users cannot edit. A few are shown in the volume's `metadata`
(Cinder's visible admin metadata), shadowing user values of the same key."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete as sa_delete
from sqlmodel import Session, select

from cinderflow.db.models import VolumeAdminMetadata

EXTEND_NEW_SIZE = "extend_new_size"
EXTEND_RESERVATIONS = "extend_reservations"
MIGRATION_KEY_ID = "migration_key_id"
"""A migration's destination key until the migration ends (then the volume's, or deleted)."""
TRANSFER_KEY_PREFIX = "transfer_key:"
"""`transfer_key:<receiving project>:<volume or snapshot id>`: a key cloned for a transfer
being accepted."""
SOURCE_IMAGE_KEY_ID = "source_image_key_id"
"""The secret of the raw LUKS image a volume is being created from: the volume's key is made
as a clone of it (the create's end removes the record)."""
UPLOAD_KEY_PREFIX = "upload_key:"
"""`upload_key:<image id>`: the clone of the volume's key made for an image being uploaded,
until the upload ends (then the image's, or deleted)."""
OPERATION_KEYS = (EXTEND_NEW_SIZE, EXTEND_RESERVATIONS, MIGRATION_KEY_ID, SOURCE_IMAGE_KEY_ID)
"""Keys an operation in flight publishes; the end of any operation removes its own."""
VISIBLE = (EXTEND_NEW_SIZE,)
"""Shown to clients in `metadata`: the compute reads the target size of an online extend."""


def put(session: Session, volume_id: str, items: dict[str, str]) -> None:
    for key, value in items.items():
        session.merge(VolumeAdminMetadata(volume_id=volume_id, key=key, value=value))
    session.flush()


def remove(session: Session, volume_id: str, keys: Iterable[str]) -> None:
    session.exec(
        sa_delete(VolumeAdminMetadata).where(
            VolumeAdminMetadata.volume_id == volume_id, VolumeAdminMetadata.key.in_(list(keys))
        )
    )


def visible_of(session: Session, volume_ids: list[str]) -> dict[str, dict[str, str]]:
    """The visible admin metadata of each volume."""
    found: dict[str, dict[str, str]] = {volume_id: {} for volume_id in volume_ids}
    if volume_ids:
        rows = session.exec(
            select(VolumeAdminMetadata).where(
                VolumeAdminMetadata.volume_id.in_(volume_ids), VolumeAdminMetadata.key.in_(VISIBLE)
            )
        )
        for row in rows:
            found[row.volume_id][row.key] = row.value
    return found
