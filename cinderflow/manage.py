"""`cinderflow manage volume reset-state`: the operator's escape hatch (cinder-manage's role).

The API refuses resets that cannot be true and routes the rest through the driver or through
the operation in flight. An operator who knows better can write the database directly:
`--force` skips the refusal tables and terminates an operation that owns the volume (its
Temporal workflow, with the reason recorded in its history) instead of asking it to stop. The
driver is not called. Every use is logged. The write is the operations' own final write
(db/final_write.py), unfenced: reservations, admin metadata, holds and owned snapshots are
released as by any end of an operation.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import delete, func
from sqlmodel import Session, select
from temporalio.service import RPCError

from cinderflow import reset_rules
from cinderflow.db import admin_metadata, final_write
from cinderflow.db import attachments as attachment_db
from cinderflow.db.engine import Database
from cinderflow.db.models import OutboxEntry, Reservation, Snapshot, Volume
from cinderflow.payloads import FinalWrite
from cinderflow.settings import Settings
from cinderflow.status import ResourceKind
from cinderflow.temporal.client import connect

log = logging.getLogger("cinderflow.manage")


class ManageError(Exception):
    """Refused; the message says why and what to do."""


def reset_volume_state(
    settings: Settings,
    volume_id: str,
    *,
    status: str,
    attach_status: str | None = None,
    migration_status: str | None = None,
    force: bool = False,
) -> str:
    """Reset the volume in the database; a one-line account of what was done."""
    try:
        reset = reset_rules.parse_volume_reset(status, attach_status, migration_status)
    except reset_rules.ResetRefused as refused:
        raise ManageError(str(refused)) from None
    db = Database(settings.db_url)
    try:
        owner = _check(db, volume_id, reset, force)
        if owner is not None:
            asyncio.run(_terminate(settings, owner, f"volume {volume_id}"))
        account = _write(db, volume_id, reset, owner)
    finally:
        db.dispose()
    log.warning("manage reset-state: %s", account)
    return account


def _check(db: Database, volume_id: str, reset: reset_rules.VolumeReset, force: bool) -> str | None:
    """The owning workflow (to terminate), after the API's checks unless forced."""
    with db.read() as session:
        volume = session.get(Volume, volume_id)
        if volume is None:
            raise ManageError(f"Volume {volume_id} could not be found.")
        if force:
            return volume.workflow_id
        if volume.workflow_id is not None:
            raise ManageError(
                f"Operation {volume.workflow_id} owns volume {volume_id}. Reset it through the "
                "API (the operation then stops and compensates), or add --force to terminate it."
            )
        attachments = [a.id for a in attachment_db.live(session, volume_id)]
        try:
            reset_rules.check_volume_reset(volume.status, reset, attachments)
        except reset_rules.ResetRefused as refused:
            raise ManageError(f"{refused} (--force writes it anyway)") from None
        return None


async def _terminate(settings: Settings, workflow_id: str, resource: str) -> None:
    client = await connect(settings)
    try:
        await client.get_workflow_handle(workflow_id).terminate(
            reason=f"cinderflow manage reset-state --force on {resource}"
        )
    except RPCError as rpc:  # already ended: nothing to stop
        log.info("workflow %s not terminated: %s", workflow_id, rpc.message)


def _write(db: Database, volume_id: str, reset: reset_rules.VolumeReset, owner: str | None) -> str:
    with db.transaction() as session:
        volume = session.get(Volume, volume_id, with_for_update=True)
        if volume is None:
            raise ManageError(f"Volume {volume_id} could not be found.")
        _same_owner(volume, owner)
        before, after = volume.status, reset_rules.target_status(volume.status, reset)
        held = session.exec(
            select(func.count()).select_from(Reservation).where(Reservation.volume_id == volume_id)
        ).one()
        final_write.apply(
            session,
            FinalWrite(
                resource_id=volume_id,
                status=after,
                attach_status=reset.attach_status,
                migration_status=reset.migration_status,
                admin_metadata=list(admin_metadata.OPERATION_KEYS),
                reason="cinderflow manage volume reset-state",
            ),
            owner,
            message_ttl=0,
            fenced=False,
        )
        _forget_pending(session, f"volume-{volume_id}-")
        parts = [f"volume {volume_id}: {before} -> {after}"]
        if reset.attach_status:
            parts.append(f"attach_status {reset.attach_status}")
        if owner:
            parts.append(f"terminated workflow {owner}")
        if held:
            parts.append(f"released {held} reservation(s)")
        return ", ".join(parts)


def _forget_pending(session: Session, prefix: str) -> None:
    """Drop the resource's own operations not started yet (their workflow ids start with
    `<kind>-<id>-`); the outbox entries of its snapshots are theirs, and stay."""
    session.exec(delete(OutboxEntry).where(OutboxEntry.workflow_id.startswith(prefix)))  # type: ignore[call-overload,attr-defined]


def reset_snapshot_state(
    settings: Settings, snapshot_id: str, *, status: str, force: bool = False
) -> str:
    """Reset a snapshot in the database; a one-line account of what was done. Without
    `force`: the API's tables, and never a snapshot an operation owns. With `force`: the
    owning snapshot operation is terminated first (not a cascading volume delete: reset the
    volume for that)."""
    try:
        target = reset_rules.parse_snapshot_status(status)
        if not force:
            reset_rules.check_snapshot_reset(target)
    except reset_rules.ResetRefused as refused:
        raise ManageError(f"{refused} (--force writes it anyway)") from None
    db = Database(settings.db_url)
    try:
        with db.read() as session:
            snapshot = session.get(Snapshot, snapshot_id)
            if snapshot is None:
                raise ManageError(f"Snapshot {snapshot_id} could not be found.")
            owner, before = snapshot.workflow_id, snapshot.status
        if owner is not None and not force:
            raise ManageError(
                f"Operation {owner} owns snapshot {snapshot_id}. Reset it through the API, or "
                "add --force to terminate it."
            )
        if owner is not None and not owner.startswith(f"snapshot-{snapshot_id}-"):
            raise ManageError(
                f"Snapshot {snapshot_id} is part of operation {owner} of its volume; reset the "
                "volume instead (cinderflow manage volume reset-state --force)."
            )
        if owner is not None:
            asyncio.run(_terminate(settings, owner, f"snapshot {snapshot_id}"))
        with db.transaction() as session:
            row = session.get(Snapshot, snapshot_id, with_for_update=True)
            if row is None:
                raise ManageError(f"Snapshot {snapshot_id} could not be found.")
            _same_owner(row, owner)
            final_write.apply(
                session,
                FinalWrite(
                    resource=ResourceKind.SNAPSHOT,
                    resource_id=snapshot_id,
                    status=target,
                    reason="cinderflow manage snapshot reset-state",
                ),
                owner,
                message_ttl=0,
                fenced=False,
            )
            _forget_pending(session, f"snapshot-{snapshot_id}-")
    finally:
        db.dispose()
    account = f"snapshot {snapshot_id}: {before} -> {target}"
    if owner:
        account += f", terminated workflow {owner}"
    log.warning("manage reset-state: %s", account)
    return account


def _same_owner(row: Volume | Snapshot, owner: str | None) -> None:
    """The row still has the owner it had when we looked (and, forced, terminated)."""
    if row.workflow_id not in (None, owner):
        raise ManageError(
            f"{row.id} was taken by operation {row.workflow_id} meanwhile; run the command again."
        )
