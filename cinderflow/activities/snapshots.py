"""Control-queue steps that read snapshot rows, fenced on ownership like the volume steps."""

from __future__ import annotations

from concurrent.futures import Executor

from sqlmodel import select
from temporalio import activity

from cinderflow.activities import fencing
from cinderflow.activities.group import ActivityGroup
from cinderflow.db import snapshots as snapshot_db
from cinderflow.db.engine import Database
from cinderflow.db.models import Snapshot
from cinderflow.drivers.base import SnapshotRef
from cinderflow.threads import run_blocking


class SnapshotActivities(ActivityGroup):
    def __init__(self, db: Database, executor: Executor | None = None) -> None:
        self.db = db
        self.executor = executor

    @activity.defn(name="snapshot.load")
    async def load(self, snapshot_id: str) -> SnapshotRef:
        return await run_blocking(
            self.executor, self._load, snapshot_id, activity.info().workflow_id
        )

    def _load(self, snapshot_id: str, workflow_id: str) -> SnapshotRef:
        with self.db.read() as session:
            return snapshot_db.snapshot_ref(
                session, fencing.owned(session, Snapshot, snapshot_id, workflow_id)
            )

    @activity.defn(name="snapshot.owned_of_volume")
    async def owned_of_volume(self, volume_id: str) -> list[SnapshotRef]:
        """The volume's snapshots this workflow owns (a cascading delete took them)."""
        return await run_blocking(
            self.executor, self._owned_of_volume, volume_id, activity.info().workflow_id
        )

    def _owned_of_volume(self, volume_id: str, workflow_id: str) -> list[SnapshotRef]:
        with self.db.read() as session:
            rows = session.exec(
                select(Snapshot)
                .where(Snapshot.volume_id == volume_id, Snapshot.workflow_id == workflow_id)
                .order_by(Snapshot.created_at, Snapshot.id)
            )
            return [snapshot_db.snapshot_ref(session, row) for row in rows]
