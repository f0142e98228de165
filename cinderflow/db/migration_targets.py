"""The temporary volume of an attached volume's migration (Cinder's `target:<source id>`).

An attached volume's data is copied by its compute (swap volume), which must see the
destination as a volume of its own: it attaches it, mirrors the guest's disk into it, and then
calls `os-migrate_volume_completion`. So the destination gets a row, `available`, in the
source's project, not counted in quota, held by the migration against deletes and extends.

At the completion the two exchange what they are on their backends and their attachments
(Cinder's `finish_volume_migration`): the source keeps its id and gets the destination's
backend object and the compute's new attachment; the target row takes the old backend object
and the old attachment, which the compute then deletes, and the migration removes the row and
the old object after that.
"""

from __future__ import annotations

from sqlalchemy import delete as sa_delete
from sqlalchemy import update as sa_update
from sqlmodel import Session

from cinderflow.db import attachments as attachment_db
from cinderflow.db.models import Attachment, Volume, utcnow
from cinderflow.status import AttachStatus, VolumeStatus

BACKEND_FIELDS = ("host", "name_id", "provider_location", "provider_id", "encryption_key_id")
"""What a volume is on its backend: exchanged with its migration target."""
DELETING = "deleting"
"""The target's migration status once it holds the old backend object (Cinder's)."""


def target_status(source_id: str) -> str:
    return f"target:{source_id}"


def add(session: Session, source: Volume, target_id: str, values: dict[str, object]) -> Volume:
    """The target row (or the one an earlier attempt added)."""
    found = session.get(Volume, target_id)
    if found is not None:
        return found
    target = Volume(
        id=target_id,
        project_id=source.project_id,
        user_id=source.user_id,
        name=source.name,
        description=f"migration target of volume {source.id}",
        size=source.size,
        status=VolumeStatus.AVAILABLE,
        attach_status=AttachStatus.DETACHED,
        migration_status=target_status(source.id),
        availability_zone=source.availability_zone,
        volume_type_id=str(values["volume_type_id"]),
        host=str(values["host"]),
        provider_location=values.get("provider_location"),  # type: ignore[arg-type]
        encryption_key_id=values.get("encryption_key_id"),  # type: ignore[arg-type]
        multiattach=source.multiattach,
        consumes_quota=False,
    )
    session.add(target)
    session.flush()
    return target


def exchange(session: Session, source: Volume, target_id: str) -> None:
    """Give the target the source's backend object and attachments, and the source the
    target's attachments (the compute's new one); the caller then writes the source's new
    backend fields and status. The target's status follows its attachments."""
    target = session.get(Volume, target_id, with_for_update=True)
    assert target is not None, "the migration holds its target"
    old = {field: getattr(source, field) for field in BACKEND_FIELDS}
    if old["name_id"] is None:
        old["name_id"] = source.id  # the backend object is named after the source's id
    theirs = [a.id for a in attachment_db.live(session, target.id)]
    ours = [a.id for a in attachment_db.live(session, source.id)]
    _move(session, ours, target.id)
    _move(session, theirs, source.id)
    status, attach_status = attachment_db.statuses(attachment_db.live(session, target.id))
    for field, value in old.items():
        setattr(target, field, value)
    target.volume_type_id = source.volume_type_id
    target.migration_status = DELETING
    target.status, target.attach_status = status, attach_status
    target.updated_at = utcnow()
    session.add(target)
    session.flush()


def _move(session: Session, attachment_ids: list[str], volume_id: str) -> None:
    if attachment_ids:
        session.exec(
            sa_update(Attachment)
            .where(Attachment.id.in_(attachment_ids))
            .values(volume_id=volume_id)
        )


def live_attachments(session: Session, target_id: str) -> int:
    return len(attachment_db.live(session, target_id))


def remove(session: Session, target_id: str) -> None:
    """Remove the target row and its attachment rows (their exports are ended first)."""
    session.exec(sa_delete(Attachment).where(Attachment.volume_id == target_id))
    session.exec(sa_delete(Volume).where(Volume.id == target_id))
