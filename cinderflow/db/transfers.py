"""Transfer rows shared by the API and the final write."""

from __future__ import annotations

from sqlalchemy import update as sa_update
from sqlmodel import Session

from cinderflow.db.models import Transfer, utcnow


def retire(session: Session, volume_id: str) -> None:
    """End every live offer of the volume (withdrawn another way, superseded, or gone with
    the volume, as Cinder soft-deletes them)."""
    session.exec(
        sa_update(Transfer)
        .where(Transfer.volume_id == volume_id, Transfer.deleted.is_(False))
        .values(deleted=True, deleted_at=utcnow())
    )
