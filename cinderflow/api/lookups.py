"""Finding the resource a request names, as the caller may see it: 404 when it does not exist
or belongs to a project the caller cannot read (Cinder hides what you cannot see)."""

from __future__ import annotations

from sqlmodel import Session

from cinderflow.api import policy
from cinderflow.api.context import RequestContext
from cinderflow.api.errors import Conflict, NotFound, volume_not_found
from cinderflow.db import ownership
from cinderflow.db.models import Snapshot, Volume
from cinderflow.temporal.outbox import operation_of


def snapshot_not_found(snapshot_id: str) -> NotFound:
    return NotFound(f"Snapshot {snapshot_id} could not be found.")


def visible_volume(
    session: Session, ctx: RequestContext, volume_id: str, *, for_update: bool = False
) -> Volume:
    """`for_update` locks the row until commit (PostgreSQL), for read-then-write transactions."""
    volume = session.get(Volume, volume_id, with_for_update=for_update)
    if volume is None or not policy.allowed(ctx, "volume:get", volume.project_id):
        raise volume_not_found(volume_id)
    return volume


def visible_snapshot(
    session: Session, ctx: RequestContext, snapshot_id: str, *, for_update: bool = False
) -> Snapshot:
    snapshot = session.get(Snapshot, snapshot_id, with_for_update=for_update)
    if snapshot is None or not policy.allowed(ctx, "volume:get_snapshot", snapshot.project_id):
        raise snapshot_not_found(snapshot_id)
    return snapshot


def refuse_busy(session: Session, volume: Volume, verb: str) -> None:
    """409 while an operation owns the volume or reads it (a snapshot or clone of it)."""
    held = ownership.holds_on(session, volume.id)
    if volume.workflow_id is not None or held:
        holder = (
            f"operation {operation_of(volume.workflow_id)} owns it"
            if volume.workflow_id
            else ownership.hold_reason(held[0])
        )
        raise Conflict(f"Volume {volume.id} is busy: {holder}; {verb} it once that has ended.")
