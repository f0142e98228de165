"""Control-queue steps that read and write volume rows.

Every write is fenced on ownership: it applies only while `volumes.workflow_id` is the calling
workflow (read from the activity context, so callers cannot get it wrong). Each step is
idempotent: a retry after a step that committed but whose completion was lost sees
`last_workflow_id` (or the missing row) and succeeds without writing again.
"""

from __future__ import annotations

from concurrent.futures import Executor

from sqlalchemy import delete
from temporalio import activity
from temporalio.exceptions import ApplicationError

from cinderflow import user_messages
from cinderflow.db import volumes as volume_db
from cinderflow.db.cas import compare_and_swap
from cinderflow.db.engine import Database
from cinderflow.db.models import Volume
from cinderflow.drivers.base import VolumeRef
from cinderflow.payloads import VolumeFinish
from cinderflow.threads import run_blocking

LOST_OWNERSHIP = "LostOwnership"
MODEL_UPDATE_KEYS = frozenset({"provider_location", "provider_id"})
"""Driver model-update fields a driver may set on the volume row."""


def lost_ownership(volume_id: str, workflow_id: str) -> ApplicationError:
    return ApplicationError(
        f"volume {volume_id} is no longer owned by workflow {workflow_id}",
        type=LOST_OWNERSHIP,
        non_retryable=True,
    )


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
            volume = session.get(Volume, volume_id)
            if volume is None or volume.workflow_id != workflow_id:
                raise lost_ownership(volume_id, workflow_id)
            return volume_db.volume_ref(session, volume)

    @activity.defn(name="volume.finish")
    async def finish(self, request: VolumeFinish) -> None:
        """Write the final status and release ownership."""
        await run_blocking(self.executor, self._finish, request, activity.info().workflow_id)

    def _finish(self, request: VolumeFinish, workflow_id: str) -> None:
        update = {k: v for k, v in request.model_update.items() if k in MODEL_UPDATE_KEYS}
        with self.db.transaction() as session:
            done = compare_and_swap(
                session,
                Volume,
                request.volume_id,
                expected={"workflow_id": workflow_id},
                values={
                    **update,
                    "status": request.status,
                    "workflow_id": None,
                    "last_workflow_id": workflow_id,
                },
            )
            volume = session.get(Volume, request.volume_id)
            if not done:
                already_done = (
                    volume is not None
                    and volume.workflow_id is None
                    and volume.last_workflow_id == workflow_id
                    and volume.status == request.status
                )
                if not already_done:
                    raise lost_ownership(request.volume_id, workflow_id)
            if request.message and volume is not None:
                spec = request.message
                user_messages.record(
                    session,
                    message_id=user_messages.message_id_for(workflow_id, "finish"),
                    project_id=volume.project_id,
                    action=spec.action,
                    detail=spec.detail,
                    resource_type=spec.resource_type,
                    resource_uuid=volume.id,
                    request_id=spec.request_id,
                    ttl=self.message_ttl,
                )

    @activity.defn(name="volume.destroy")
    async def destroy(self, volume_id: str) -> None:
        """Remove the row (and, by cascade, its metadata) of a volume deleted on its backend."""
        await run_blocking(self.executor, self._destroy, volume_id, activity.info().workflow_id)

    def _destroy(self, volume_id: str, workflow_id: str) -> None:
        with self.db.transaction() as session:
            removed = session.exec(
                delete(Volume).where(Volume.id == volume_id, Volume.workflow_id == workflow_id)
            ).rowcount
            if not removed and session.get(Volume, volume_id) is not None:
                raise lost_ownership(volume_id, workflow_id)
