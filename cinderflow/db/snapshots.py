"""Snapshot queries shared by the API and the activities."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement
from sqlmodel import Session

from cinderflow.db import ownership
from cinderflow.db.models import Snapshot, Volume
from cinderflow.drivers.base import SnapshotRef
from cinderflow.status import SnapshotStatus


def snapshot_ref(session: Session, snapshot: Snapshot) -> SnapshotRef:
    volume = session.get(Volume, snapshot.volume_id)
    return SnapshotRef(
        id=snapshot.id,
        volume_id=snapshot.volume_id,
        volume_size=snapshot.volume_size,
        host=volume.host if volume else None,
        provider_location=snapshot.provider_location,
        encryption_key_id=snapshot.encryption_key_id,
        volume_name_id=volume.name_id if volume else None,
    )


DELETABLE = (SnapshotStatus.AVAILABLE, SnapshotStatus.ERROR)


def deletable(force: bool = False) -> tuple[dict[str, Any], list[ColumnElement[bool]]]:
    """The compare-and-swap condition (expected values, where clauses) for deleting a
    snapshot: available or error unless forced, and nobody reading it (a volume being
    created from it)."""
    return ({} if force else {"status": DELETABLE}), [ownership.not_held(Snapshot.id)]


def take_for_deletion(session: Session, snapshot: Snapshot, workflow_id: str) -> bool:
    """Give the snapshot to a cascading volume delete, if it may be deleted."""
    expected, where = deletable()
    return ownership.take(
        session,
        Snapshot,
        snapshot.id,
        workflow_id=workflow_id,
        expected=expected,
        values={"status": SnapshotStatus.DELETING, "previous_status": snapshot.status},
        where=where,
    )
