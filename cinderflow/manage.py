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
from sqlmodel import select
from temporalio.service import RPCError

from cinderflow import reset_rules
from cinderflow.db import admin_metadata, final_write
from cinderflow.db import attachments as attachment_db
from cinderflow.db.engine import Database
from cinderflow.db.models import OutboxEntry, Reservation, Volume
from cinderflow.payloads import FinalWrite
from cinderflow.settings import Settings
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
            asyncio.run(_terminate(settings, owner, volume_id))
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


async def _terminate(settings: Settings, workflow_id: str, volume_id: str) -> None:
    client = await connect(settings)
    try:
        await client.get_workflow_handle(workflow_id).terminate(
            reason=f"cinderflow manage volume reset-state --force on volume {volume_id}"
        )
    except RPCError as rpc:  # already ended: nothing to stop
        log.info("workflow %s not terminated: %s", workflow_id, rpc.message)


def _write(db: Database, volume_id: str, reset: reset_rules.VolumeReset, owner: str | None) -> str:
    with db.transaction() as session:
        volume = session.get(Volume, volume_id, with_for_update=True)
        if volume is None:
            raise ManageError(f"Volume {volume_id} could not be found.")
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
        session.exec(delete(OutboxEntry).where(OutboxEntry.volume_id == volume_id))  # type: ignore[call-overload]
        parts = [f"volume {volume_id}: {before} -> {after}"]
        if reset.attach_status:
            parts.append(f"attach_status {reset.attach_status}")
        if owner:
            parts.append(f"terminated workflow {owner}")
        if held:
            parts.append(f"released {held} reservation(s)")
        return ", ".join(parts)
