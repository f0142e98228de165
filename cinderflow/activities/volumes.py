"""Control-queue steps that read volume rows (and publish an online extend's target size).

Reads of an owned volume are fenced on ownership: they answer only the workflow that owns the
volume, read from the activity context so callers cannot get it wrong. The operation's end is
`operation.finish` (activities/operation.py).
"""

from __future__ import annotations

import json
from concurrent.futures import Executor

from sqlmodel import select
from temporalio import activity

from cinderflow.activities import fencing
from cinderflow.activities.group import ActivityGroup
from cinderflow.db import admin_metadata, migration_targets
from cinderflow.db import attachments as attachment_db
from cinderflow.db import volumes as volume_db
from cinderflow.db.admin_metadata import EXTEND_NEW_SIZE, EXTEND_RESERVATIONS
from cinderflow.db.cas import compare_and_swap
from cinderflow.db.engine import Database
from cinderflow.db.models import Reservation, Volume
from cinderflow.drivers.base import VolumeRef
from cinderflow.payloads import (
    Connection,
    ExtendRequest,
    MigrationState,
    MigrationTarget,
    StatusChange,
)
from cinderflow.threads import run_blocking


class VolumeActivities(ActivityGroup):
    def __init__(self, db: Database, executor: Executor | None = None) -> None:
        self.db = db
        self.executor = executor

    @activity.defn(name="volume.load")
    async def load(self, volume_id: str) -> VolumeRef:
        """The volume as a driver sees it; only for the workflow that owns it."""
        return await run_blocking(self.executor, self._load, volume_id, activity.info().workflow_id)

    def _load(self, volume_id: str, workflow_id: str) -> VolumeRef:
        with self.db.read() as session:
            volume = fencing.owned(session, Volume, volume_id, workflow_id)
            return volume_db.volume_ref(session, volume)

    @activity.defn(name="volume.servers")
    async def servers(self, volume_id: str) -> list[str]:
        """Instances the volume is attached to (any attachment naming one)."""
        return await run_blocking(self.executor, self._servers, volume_id)

    def _servers(self, volume_id: str) -> list[str]:
        with self.db.read() as session:
            return attachment_db.servers(session, volume_id)

    @activity.defn(name="volume.await_compute")
    async def await_compute(self, request: ExtendRequest) -> None:
        """Publish the target size for the compute (Cinder's admin metadata keys
        `extend_new_size`, shown in the volume's metadata, and `extend_reservations`)."""
        await run_blocking(self.executor, self._await_compute, request, activity.info().workflow_id)

    def _await_compute(self, request: ExtendRequest, workflow_id: str) -> None:
        volume_id = request.volume.id
        with self.db.transaction() as session:
            fencing.owned(session, Volume, volume_id, workflow_id, lock=True)
            reservations = session.exec(
                select(Reservation.id).where(Reservation.volume_id == volume_id)
            ).all()
            admin_metadata.put(
                session,
                volume_id,
                {
                    EXTEND_NEW_SIZE: str(request.new_size),
                    EXTEND_RESERVATIONS: json.dumps([str(r) for r in reservations]),
                },
            )

    @activity.defn(name="volume.set_migration_status")
    async def set_migration_status(self, state: MigrationState) -> None:
        """A migration's progress through Cinder's `migration_status` (starting, migrating),
        written by the migration that owns the volume; its end is the final write's."""
        await run_blocking(
            self.executor, self._set_migration_status, state, activity.info().workflow_id
        )

    def _set_migration_status(self, state: MigrationState, workflow_id: str) -> None:
        self._set(state.volume_id, workflow_id, {"migration_status": state.migration_status})

    def _set(self, volume_id: str, workflow_id: str, values: dict[str, str]) -> None:
        """Fields of the volume its owner may change before its final write."""
        with self.db.transaction() as session:
            fencing.owned(session, Volume, volume_id, workflow_id, lock=True)
            compare_and_swap(
                session, Volume, volume_id, expected={"workflow_id": workflow_id}, values=values
            )

    @activity.defn(name="volume.set_status")
    async def set_status(self, change: StatusChange) -> None:
        """An intermediate status the operation that owns the volume shows while it works (a
        create's `downloading`); its end is the final write's."""
        await run_blocking(self.executor, self._set_status, change, activity.info().workflow_id)

    def _set_status(self, change: StatusChange, workflow_id: str) -> None:
        self._set(change.volume_id, workflow_id, {"status": change.status})

    @activity.defn(name="volume.add_migration_target")
    async def add_migration_target(self, target: MigrationTarget) -> None:
        """The temporary volume the compute swaps an attached volume's disk into, held by the
        migration (no delete, extend or retype of it meanwhile)."""
        await run_blocking(
            self.executor, self._add_migration_target, target, activity.info().workflow_id
        )

    def _add_migration_target(self, target: MigrationTarget, workflow_id: str) -> None:
        with self.db.transaction() as session:
            source = fencing.owned(session, Volume, target.source_id, workflow_id, lock=True)
            if session.get(Volume, target.target_id) is not None:
                return  # an earlier attempt added it (and its hold)
            migration_targets.add(session, source, target.target_id, target.values)
            migration_targets.hold(session, target.target_id, workflow_id, source.id)

    @activity.defn(name="volume.target_attachments")
    async def target_attachments(self, target_id: str) -> list[str]:
        """The servers with an attachment of the migration target (the compute's)."""
        return await run_blocking(self.executor, self._target_attachments, target_id)

    def _target_attachments(self, target_id: str) -> list[str]:
        with self.db.read() as session:
            return migration_targets.attached_servers(session, target_id)

    @activity.defn(name="volume.remove_migration_target")
    async def remove_migration_target(self, target_id: str) -> bool:
        """Remove the target row and its attachments (their exports were ended first); False
        if something else has a part in it now (then it is left for the operator)."""
        return await run_blocking(self.executor, self._remove_migration_target, target_id)

    def _remove_migration_target(self, target_id: str) -> bool:
        try:
            with self.db.transaction() as session:
                migration_targets.remove(session, target_id)
        except migration_targets.StillInUse as busy:
            activity.logger.warning("%s", busy)
            return False
        return True

    @activity.defn(name="volume.connections")
    async def connections(self, volume_id: str) -> list[Connection]:
        """The volume's attachments as driver connections (a reset to detached ends them)."""
        return await run_blocking(self.executor, self._connections, volume_id)

    def _connections(self, volume_id: str) -> list[Connection]:
        with self.db.read() as session:
            volume = session.get(Volume, volume_id)
            if volume is None:
                return []
            ref = volume_db.volume_ref(session, volume)
            return [
                Connection(attachment_id=a.id, volume=ref, connector=a.connector or {})
                for a in attachment_db.live(session, volume_id)
            ]
