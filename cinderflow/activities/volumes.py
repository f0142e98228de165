"""Control-queue steps that read and write volume rows.

Every write is fenced on ownership (db/ownership.py): it applies only while the row names the
calling workflow, read from the activity context so callers cannot get it wrong. Each step is
idempotent: a retry after a step that committed succeeds without writing again.
"""

from __future__ import annotations

import json
from concurrent.futures import Executor

from sqlmodel import select
from temporalio import activity

from cinderflow import quota, user_messages
from cinderflow.activities import fencing
from cinderflow.db import admin_metadata
from cinderflow.db import attachments as attachment_db
from cinderflow.db import volumes as volume_db
from cinderflow.db.admin_metadata import EXTEND_NEW_SIZE, EXTEND_RESERVATIONS
from cinderflow.db.engine import Database
from cinderflow.db.models import Reservation, Volume
from cinderflow.drivers.base import VolumeRef
from cinderflow.payloads import (
    Connection,
    ExtendFinish,
    ExtendRequest,
    Finish,
    ResetApply,
    VolumeMessage,
)
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

    # Extend --------------------------------------------------------------------------------

    @activity.defn(name="volume.servers")
    async def servers(self, volume_id: str) -> list[str]:
        """Instances the volume is attached to (any attachment naming one)."""
        return await run_blocking(self.executor, self._servers, volume_id)

    def _servers(self, volume_id: str) -> list[str]:
        with self.db.read() as session:
            return sorted(
                {a.instance_uuid for a in attachment_db.live(session, volume_id) if a.instance_uuid}
            )

    @activity.defn(name="volume.await_compute")
    async def await_compute(self, request: ExtendRequest) -> None:
        """Publish the target size for the compute (Cinder's admin metadata keys
        `extend_new_size`, shown in the volume's metadata, and `extend_reservations`)."""
        await run_blocking(self.executor, self._await_compute, request, activity.info().workflow_id)

    def _await_compute(self, request: ExtendRequest, workflow_id: str) -> None:
        volume_id = request.volume.id
        with self.db.transaction() as session:
            fencing.owned(session, Volume, volume_id, workflow_id)
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

    @activity.defn(name="volume.finish_extend")
    async def finish_extend(self, request: ExtendFinish) -> None:
        await run_blocking(self.executor, self._finish_extend, request, activity.info().workflow_id)

    def _finish_extend(self, request: ExtendFinish, workflow_id: str) -> None:
        with self.db.transaction() as session:
            volume = session.get(Volume, request.volume_id, with_for_update=True)
            status = request.status
            if status is None:
                status, _ = attachment_db.statuses(attachment_db.live(session, request.volume_id))
            if volume is not None and volume.workflow_id == workflow_id:
                if request.new_size is not None:
                    volume.size = request.new_size  # committed with the reservation's release
                quota.release(session, volume.id)
                admin_metadata.remove(session, volume.id, (EXTEND_NEW_SIZE, EXTEND_RESERVATIONS))
            finish = Finish(
                resource_id=request.volume_id,
                status=status,
                reason=request.reason,
                message=request.message,
            )
            fencing.finish(session, Volume, finish, workflow_id, self.message_ttl)

    @activity.defn(name="volume.record_message")
    async def record_message(self, request: VolumeMessage) -> None:
        await run_blocking(
            self.executor, self._record_message, request, activity.info().workflow_id
        )

    def _record_message(self, request: VolumeMessage, workflow_id: str) -> None:
        with self.db.transaction() as session:
            volume = session.get(Volume, request.volume_id)
            if volume is None:
                return
            spec = request.message
            user_messages.record(
                session,
                message_id=user_messages.message_id_for(workflow_id, f"note-{spec.detail}"),
                project_id=volume.project_id,
                action=spec.action,
                detail=spec.detail,
                resource_uuid=volume.id,
                request_id=spec.request_id,
                ttl=self.message_ttl,
            )

    # Reset ---------------------------------------------------------------------------------

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

    @activity.defn(name="volume.apply_reset")
    async def apply_reset(self, apply: ResetApply) -> None:
        """Write the reset (status, attach and migration status), drop the attachments when
        detached, release every reservation and the extend keys, and give up ownership: one
        transaction, so quota usage equals a recount afterwards."""
        await run_blocking(self.executor, self._apply_reset, apply, activity.info().workflow_id)

    def _apply_reset(self, apply: ResetApply, workflow_id: str) -> None:
        request = apply.request
        with self.db.transaction() as session:
            volume = session.get(Volume, request.volume_id, with_for_update=True)
            if volume is not None and volume.workflow_id == workflow_id:
                attachment_db.reset(session, volume, request.attach_status)
                if request.migration_status is not None:
                    status = request.migration_status
                    volume.migration_status = None if status == "none" else status
                quota.release(session, volume.id)
                admin_metadata.remove(session, volume.id, (EXTEND_NEW_SIZE, EXTEND_RESERVATIONS))
            finish = Finish(
                resource_id=request.volume_id,
                status=request.status,
                reason=apply.reason,
                message=apply.message,
            )
            fencing.finish(session, Volume, finish, workflow_id, self.message_ttl)
