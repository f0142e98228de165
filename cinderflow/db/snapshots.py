"""Snapshot queries shared by the API and the activities."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from cinderflow.db.cas import compare_and_swap
from cinderflow.db.models import Snapshot, Volume
from cinderflow.drivers.base import SnapshotRef


def snapshot_ref(session: Session, snapshot: Snapshot) -> SnapshotRef:
    volume = session.get(Volume, snapshot.volume_id)
    return SnapshotRef(
        id=snapshot.id,
        volume_id=snapshot.volume_id,
        volume_size=snapshot.volume_size,
        host=volume.host if volume else None,
        provider_location=snapshot.provider_location,
        encryption_key_id=snapshot.encryption_key_id,
    )


DELETABLE = ("available", "error")


def being_copied():
    """Condition: a volume is being created from the snapshot."""
    return (
        select(Volume.id)
        .where(Volume.snapshot_id == Snapshot.id, Volume.status == "creating")
        .exists()
    )


def mark_deleting(
    session: Session, snapshot_id: str, workflow_id: str, *, force: bool = False
) -> bool:
    """Hand the snapshot to a deleting workflow, unless an operation owns it or volumes are
    being created from it (also used by the cascading volume delete)."""
    expected: dict[str, Any] = {"workflow_id": None}
    if not force:
        expected["status"] = DELETABLE
    return compare_and_swap(
        session,
        Snapshot,
        snapshot_id,
        expected=expected,
        where=[~being_copied()],
        values={"status": "deleting", "workflow_id": workflow_id},
    )
