"""Control-queue steps that read and write volume rows.

Every write is fenced on ownership (db/ownership.py): it applies only while the row names the
calling workflow, read from the activity context so callers cannot get it wrong. Each step is
idempotent: a retry after a step that committed succeeds without writing again.
"""

from __future__ import annotations

from concurrent.futures import Executor

from temporalio import activity

from cinderflow import quota
from cinderflow.activities import fencing
from cinderflow.db import volumes as volume_db
from cinderflow.db.engine import Database
from cinderflow.db.models import Volume
from cinderflow.drivers.base import VolumeRef
from cinderflow.payloads import Finish
from cinderflow.threads import run_blocking


class VolumeActivities:
    def __init__(
        self, db: Database, executor: Executor | None = None, message_ttl: float = 2592000.0
    ) -> None:
        self.db = db
        self.executor = executor
        self.message_ttl = message_ttl

    @activity.defn(name="volume.load")
    async def load(self, volume_id: str) -> VolumeRef:
        """The volume as a driver sees it; only for the workflow that owns it."""
        return await run_blocking(self.executor, self._load, volume_id, activity.info().workflow_id)

    def _load(self, volume_id: str, workflow_id: str) -> VolumeRef:
        with self.db.read() as session:
            volume = fencing.owned(session, Volume, volume_id, workflow_id)
            return volume_db.volume_ref(session, volume)

    @activity.defn(name="volume.finish")
    async def finish(self, request: Finish) -> None:
        """Write the final status (and a failure's user message) and release ownership."""
        await run_blocking(self.executor, self._finish, request, activity.info().workflow_id)

    def _finish(self, request: Finish, workflow_id: str) -> None:
        with self.db.transaction() as session:
            fencing.finish(session, Volume, request, workflow_id, self.message_ttl)

    @activity.defn(name="volume.destroy")
    async def destroy(self, volume_id: str) -> None:
        """Remove the row (and, by cascade, its metadata) of a volume deleted on its backend."""
        await run_blocking(self.executor, self._destroy, volume_id, activity.info().workflow_id)

    def _destroy(self, volume_id: str, workflow_id: str) -> None:
        with self.db.transaction() as session:
            quota.release(session, volume_id)
            fencing.remove(session, Volume, volume_id, workflow_id)
