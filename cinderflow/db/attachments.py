"""Attachments and the volume status they imply (Cinder's `_get_statuses_from_attachments`)."""

from __future__ import annotations

from sqlmodel import Session, select

from cinderflow.db.models import Attachment, Volume, utcnow
from cinderflow.status import AttachStatus, VolumeStatus

VOLUME_STATUS = {
    AttachStatus.ATTACHED: VolumeStatus.IN_USE,
    AttachStatus.DETACHED: VolumeStatus.AVAILABLE,
}
"""Attachment status -> volume status; others (attaching, detaching, reserved) are the same."""


def live(session: Session, volume_id: str) -> list[Attachment]:
    return list(session.exec(select(Attachment).where(Attachment.volume_id == volume_id)))


def servers(session: Session, volume_id: str) -> list[str]:
    """The instances the volume is attached to (any attachment naming one), sorted."""
    return sorted({a.instance_uuid for a in live(session, volume_id) if a.instance_uuid})


def statuses(attachments: list[Attachment]) -> tuple[str, str]:
    """(volume status, volume attach_status) from the attachments that did not fail: the
    first in the order attached < attaching < detaching < reserved, else detached."""
    healthy = sorted(
        a.attach_status for a in attachments if not a.attach_status.startswith("error_")
    )
    attach_status = healthy[0] if healthy else AttachStatus.DETACHED
    return VOLUME_STATUS.get(attach_status, attach_status), attach_status


def settle_volume(session: Session, volume_id: str) -> bool:
    """Derive the volume's status from its attachments, unless an operation owns the volume
    (then that workflow writes its status); False in that case."""
    volume = session.get(Volume, volume_id, with_for_update=True)
    if volume is None or volume.workflow_id is not None:
        return False
    volume.status, volume.attach_status = statuses(live(session, volume_id))
    volume.updated_at = utcnow()
    session.flush()
    return True


def attached_to(session: Session, volume_ids: list[str]) -> dict[str, list[Attachment]]:
    """Each volume's `attached` attachments (what the volume view lists)."""
    found: dict[str, list[Attachment]] = {volume_id: [] for volume_id in volume_ids}
    if volume_ids:
        rows = session.exec(
            select(Attachment)
            .where(Attachment.volume_id.in_(volume_ids), Attachment.attach_status == "attached")
            .order_by(Attachment.attach_time)
        )
        for row in rows:
            found[row.volume_id].append(row)
    return found


def reset(session: Session, volume: Volume, attach_status: str | None) -> None:
    """A reset's attach status: `detached` removes every attachment (their connections were
    terminated first); `attached` only relabels, as Cinder does."""
    if attach_status == AttachStatus.DETACHED:
        for attachment in live(session, volume.id):
            session.delete(attachment)
    if attach_status is not None:
        volume.attach_status = attach_status
    session.flush()
