"""Control-queue steps every operation shares: its one final write, and a user message that
changes no status.

The final write reads the caller's workflow id from the activity context (so no caller can end
someone else's operation) and is idempotent: a retry after it committed succeeds without
writing again.
"""

from __future__ import annotations

from concurrent.futures import Executor

from temporalio import activity

from cinderflow import metrics, user_messages
from cinderflow.activities import fencing
from cinderflow.activities.group import ActivityGroup
from cinderflow.db import final_write, operation_records
from cinderflow.db.engine import Database
from cinderflow.db.models import Volume
from cinderflow.payloads import FinalWrite, VolumeMessage
from cinderflow.threads import run_blocking


class OperationActivities(ActivityGroup):
    def __init__(
        self, db: Database, executor: Executor | None = None, message_ttl: float = 2592000.0
    ) -> None:
        self.db = db
        self.executor = executor
        self.message_ttl = message_ttl

    @activity.defn(name="operation.finish")
    async def finish(self, write: FinalWrite) -> None:
        """End the calling operation on its resource (db/final_write.py), or LostOwnership."""
        await run_blocking(self.executor, self._finish, write, activity.info().workflow_id)

    def _finish(self, write: FinalWrite, workflow_id: str) -> None:
        try:
            with self.db.transaction() as session:
                final_write.apply(session, write, workflow_id, message_ttl=self.message_ttl)
                ended = operation_records.ended_in(session)
        except final_write.NotOwner:
            raise fencing.lost_ownership(write.resource_id, workflow_id) from None
        metrics.observe_finished(ended)

    @activity.defn(name="operation.record_message")
    async def record_message(self, request: VolumeMessage) -> None:
        """A user message about a volume whose status does not change (a best-effort step
        failed); recorded once however often the step is retried."""
        await run_blocking(
            self.executor, self._record_message, request, activity.info().workflow_id
        )

    def _record_message(self, request: VolumeMessage, workflow_id: str) -> None:
        with self.db.transaction() as session:
            volume = session.get(Volume, request.volume_id)
            if volume is None:
                return
            user_messages.record_spec(
                session,
                request.message,
                message_id=user_messages.message_id_for(
                    workflow_id, f"note-{request.message.detail}"
                ),
                project_id=volume.project_id,
                resource_uuid=volume.id,
                ttl=self.message_ttl,
            )
