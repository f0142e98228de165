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
from sqlmodel import Session, select

from cinderflow.db import attachments as attachment_db
from cinderflow.db import ownership
from cinderflow.db.models import Attachment, Hold, Snapshot, Volume, utcnow
from cinderflow.status import AttachStatus, ResourceKind, VolumeStatus

BACKEND_FIELDS = ("host", "name_id", "provider_location", "provider_id", "encryption_key_id")
"""What a volume is on its backend: exchanged with its migration target."""
DELETING = "deleting"
"""The target's migration status once it holds the old backend object (Cinder's)."""


def target_status(source_id: str) -> str:
    return f"target:{source_id}"


def is_target(volume: Volume) -> bool:
    """A migration's temporary volume, before or after the exchange: nothing may read it
    (snapshot, clone) but the compute the migration asked to attach it."""
    status = volume.migration_status or ""
    return status.startswith("target:") or status == DELETING


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


def exchange(
    session: Session, source: Volume, target_id: str, owner: str, server: str | None
) -> None:
    """Give the target the source's backend object and attachments, and the source the
    target's attachments of `server` (the compute's new one); the caller then writes the
    source's new backend fields and status. The target's status follows its attachments, and
    it stays held by the migration (`owner`) until the migration removes it."""
    target = session.get(Volume, target_id, with_for_update=True)
    assert target is not None, "the migration holds its target"
    old = {field: getattr(source, field) for field in BACKEND_FIELDS}
    if old["name_id"] is None:
        old["name_id"] = source.id  # the backend object is named after the source's id
    theirs = [a.id for a in attachment_db.live(session, target.id) if a.instance_uuid == server]
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
    if not ownership.holds_on(session, target.id):  # the final write ended the migration's
        hold(session, target.id, owner, source.id)


def hold(session: Session, target_id: str, owner: str, source_id: str) -> None:
    """The migration holds its target: no delete, extend, retype, snapshot or clone of it."""
    ownership.hold(
        session,
        resource_type=ResourceKind.VOLUME,
        resource_id=target_id,
        workflow_id=owner,
        holder_id=source_id,
        operation="retype",
    )


def _move(session: Session, attachment_ids: list[str], volume_id: str) -> None:
    if attachment_ids:
        session.exec(
            sa_update(Attachment)
            .where(Attachment.id.in_(attachment_ids))
            .values(volume_id=volume_id)
        )


def attached_servers(session: Session, target_id: str) -> list[str]:
    """The instances with an attachment of the target (any status; unnamed ones as "")."""
    return sorted(a.instance_uuid or "" for a in attachment_db.live(session, target_id))


class StillInUse(Exception):
    """The target row is not only the migration's (an operation owns it or its attachment,
    it has snapshots): it is not removed."""


def remove(session: Session, target_id: str) -> None:
    """Remove the target row, its attachment rows (their exports were ended first) and the
    migration's hold; StillInUse if anything else has a part in it."""
    target = session.get(Volume, target_id, with_for_update=True)
    if target is None:
        return
    attachments = attachment_db.live(session, target_id)
    if (
        not is_target(target)
        or target.workflow_id is not None
        or any(a.workflow_id is not None for a in attachments)
        or session.exec(select(Snapshot.id).where(Snapshot.volume_id == target_id)).first()
    ):
        raise StillInUse(f"migration target {target_id} is in use; it is left for the operator")
    session.exec(sa_delete(Attachment).where(Attachment.volume_id == target_id))
    session.exec(sa_delete(Hold).where(Hold.resource_id == target_id))
    session.exec(sa_delete(Volume).where(Volume.id == target_id))
