"""Control-queue steps of the connect/disconnect workflows. They own the attachment row; the
volume's status is then derived from its attachments (db/attachments.py)."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any

from sqlmodel import Session
from temporalio import activity

from cinderflow import metrics, user_messages
from cinderflow.activities import fencing
from cinderflow.activities.group import ActivityGroup
from cinderflow.db import attachments as attachment_db
from cinderflow.db import operation_records, ownership
from cinderflow.db import volumes as volume_db
from cinderflow.db.engine import Database
from cinderflow.db.models import Attachment, Volume
from cinderflow.payloads import AttachmentFailure, Connected, Connection
from cinderflow.status import AttachStatus, OperationStatus
from cinderflow.threads import run_blocking


class AttachmentActivities(ActivityGroup):
    def __init__(
        self, db: Database, executor: Executor | None = None, message_ttl: float = 2592000.0
    ) -> None:
        self.db = db
        self.executor = executor
        self.message_ttl = message_ttl

    @activity.defn(name="attachment.load")
    async def load(self, attachment_id: str) -> Connection:
        """The attachment's volume and connector, for the workflow that owns the attachment."""
        return await run_blocking(
            self.executor, self._load, attachment_id, activity.info().workflow_id
        )

    def _load(self, attachment_id: str, workflow_id: str) -> Connection:
        with self.db.read() as session:
            attachment = fencing.owned(session, Attachment, attachment_id, workflow_id)
            volume = session.get(Volume, attachment.volume_id)
            assert volume is not None
            mode = attachment.attach_mode if attachment.attach_mode not in (None, "null") else "rw"
            return Connection(
                attachment_id=attachment.id,
                volume=volume_db.volume_ref(session, volume),
                connector=attachment.connector or {},
                attach_mode=mode,
            )

    @activity.defn(name="attachment.connected")
    async def connected(self, result: Connected) -> None:
        """Record the connection info: the attachment (and volume) are `attaching` until the
        consumer calls os-complete."""
        await run_blocking(self.executor, self._connected, result, activity.info().workflow_id)

    def _connected(self, result: Connected, workflow_id: str) -> None:
        with self.db.transaction() as session:
            attachment = session.get(Attachment, result.attachment_id)
            connector = (attachment.connector if attachment else None) or {}
            released = self._release(
                session,
                result.attachment_id,
                workflow_id,
                connection_info=result.connection_info,
                attach_status=AttachStatus.ATTACHING,
                attached_host=connector.get("host"),
                mountpoint=connector.get("mountpoint"),
            )
            attachment_db.settle_volume(session, released.volume_id)
            operation_records.end(session, workflow_id, OperationStatus.SUCCEEDED, None)
            ended = operation_records.ended_in(session)
        metrics.observe_finished(ended)

    @activity.defn(name="attachment.failed")
    async def failed(self, failure: AttachmentFailure) -> None:
        """Mark the attachment errored (ignored when deriving the volume status) and say why."""
        await run_blocking(self.executor, self._failed, failure, activity.info().workflow_id)

    def _failed(self, failure: AttachmentFailure, workflow_id: str) -> None:
        with self.db.transaction() as session:
            released = self._release(
                session, failure.attachment_id, workflow_id, attach_status=failure.status
            )
            user_messages.record_spec(
                session,
                failure.message,
                message_id=user_messages.message_id_for(workflow_id, "attachment-failed"),
                project_id=released.project_id,
                resource_uuid=released.volume_id,
                ttl=self.message_ttl,
            )
            attachment_db.settle_volume(session, released.volume_id)
            told = user_messages.user_message(failure.message.action, failure.message.detail)
            operation_records.end(
                session, workflow_id, OperationStatus.FAILED, failure.status, told
            )
            ended = operation_records.ended_in(session)
        metrics.observe_finished(ended)

    @staticmethod
    def _release(session: Session, attachment_id: str, workflow_id: str, **values: Any) -> Any:
        """Apply `values` and give up the attachment (ownership.release), or LostOwnership."""
        if not ownership.release(
            session, Attachment, attachment_id, workflow_id=workflow_id, values=values
        ):
            raise fencing.lost_ownership(attachment_id, workflow_id)
        return session.get(Attachment, attachment_id)

    @activity.defn(name="attachment.remove")
    async def remove(self, attachment_id: str) -> None:
        """Forget a disconnected attachment and derive the volume's status from the rest."""
        await run_blocking(self.executor, self._remove, attachment_id, activity.info().workflow_id)

    def _remove(self, attachment_id: str, workflow_id: str) -> None:
        with self.db.transaction() as session:
            attachment = session.get(Attachment, attachment_id)
            if attachment is None:
                return  # a retry after the removal committed
            volume_id = attachment.volume_id
            if not ownership.remove(session, Attachment, attachment_id, workflow_id=workflow_id):
                raise fencing.lost_ownership(attachment_id, workflow_id)
            attachment_db.settle_volume(session, volume_id)
            operation_records.end(session, workflow_id, OperationStatus.SUCCEEDED, None)
            ended = operation_records.ended_in(session)
        metrics.observe_finished(ended)
