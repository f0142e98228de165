"""Attachments and the volume status they imply (Cinder's `_get_statuses_from_attachments`)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from cinderflow.db.models import Attachment, Volume, utcnow

VOLUME_STATUS = {"attached": "in-use", "detached": "available"}
"""Attachment status -> volume status; others (attaching, detaching, reserved) are the same."""


def live(session: Session, volume_id: str) -> list[Attachment]:
    return list(session.exec(select(Attachment).where(Attachment.volume_id == volume_id)))


def statuses(attachments: list[Attachment]) -> tuple[str, str]:
    """(volume status, volume attach_status) from the attachments that did not fail: the
    first in the order attached < attaching < detaching < reserved, else detached."""
    healthy = sorted(
        a.attach_status for a in attachments if not a.attach_status.startswith("error_")
    )
    attach_status = healthy[0] if healthy else "detached"
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


def release(
    session: Session, attachment_id: str, *, workflow_id: str, **values: Any
) -> Attachment | None:
    """Apply `values` and give up ownership; None if the attachment is not ours (or gone)."""
    attachment = session.get(Attachment, attachment_id, with_for_update=True)
    if attachment is None:
        return None
    if attachment.workflow_id != workflow_id:
        done = attachment.last_workflow_id == workflow_id and all(
            getattr(attachment, k) == v for k, v in values.items()
        )
        return attachment if done else None
    for key, value in values.items():
        setattr(attachment, key, value)
    attachment.workflow_id = None
    attachment.last_workflow_id = workflow_id
    attachment.updated_at = utcnow()
    session.flush()
    return attachment


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
    if attach_status == "detached":
        for attachment in live(session, volume.id):
            session.delete(attachment)
    if attach_status is not None:
        volume.attach_status = attach_status
    session.flush()
