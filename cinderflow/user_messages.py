"""User messages: why an asynchronous operation failed, in Cinder's codes (`message_field`).

`user_message` is "<action text>:<detail text>" and `event_id` is
`VOLUME_<resource type>_<action id>_<detail id>`, exactly as Cinder builds them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlmodel import Session

from cinderflow.db.models import Message, utcnow


@dataclass(frozen=True)
class Code:
    id: str
    text: str


class Action:
    SCHEDULE_ALLOCATE_VOLUME = Code("001", "schedule allocate volume")
    ATTACH_VOLUME = Code("002", "attach volume")
    COPY_VOLUME_TO_IMAGE = Code("003", "copy volume to image")
    UPDATE_ATTACHMENT = Code("004", "update attachment")
    COPY_IMAGE_TO_VOLUME = Code("005", "copy image to volume")
    UNMANAGE_VOLUME = Code("006", "unmanage volume")
    EXTEND_VOLUME = Code("007", "extend volume")
    CREATE_VOLUME_FROM_BACKEND = Code("008", "create volume from backend storage")
    SNAPSHOT_CREATE = Code("009", "create snapshot")
    SNAPSHOT_DELETE = Code("010", "delete snapshot")
    SNAPSHOT_UPDATE = Code("011", "update snapshot")
    SNAPSHOT_METADATA_UPDATE = Code("012", "update snapshot metadata")
    REIMAGE_VOLUME = Code("016", "reimage volume")
    RESET_STATUS = Code("101", "reset status")
    """cinderflow's own (Cinder has no reset action; ids from 101 stay clear of Cinder's)."""
    RETYPE_VOLUME = Code("102", "retype volume")
    """cinderflow's own too: Cinder records no message when a retype fails."""
    MIGRATE_VOLUME = Code("103", "migrate volume")
    TRANSFER_ACCEPT = Code("104", "accept volume transfer")


class Detail:
    UNKNOWN_ERROR = Code("001", "An unknown error occurred.")
    DRIVER_NOT_INITIALIZED = Code("002", "Driver is not initialized at present.")
    NO_BACKEND_AVAILABLE = Code("003", "Could not find any available weighted backend.")
    QUOTA_EXCEED = Code("006", "Not enough quota resource for operation.")
    NOTIFY_COMPUTE_SERVICE_FAILED = Code("009", "Compute service failed to extend volume.")
    DRIVER_FAILED_EXTEND = Code("010", "Volume Driver failed to extend volume.")
    DRIVER_FAILED_CREATE = Code("012", "Driver failed to create the volume.")
    SNAPSHOT_CREATE_ERROR = Code("013", "Snapshot failed to create.")
    SNAPSHOT_IS_BUSY = Code("015", "Snapshot is busy.")
    DRIVER_FAILED_RESET = Code("101", "Volume driver failed to reset the volume's state.")
    STOPPED_BY_RESET = Code("102", "The operation was stopped by an administrator's reset.")
    RETYPE_NEEDS_MIGRATION = Code("103", "Retype requires migration but is not allowed.")
    VOLUME_HAS_SNAPSHOTS = Code("104", "Volume must not have snapshots.")
    MIGRATION_FAILED = Code("105", "Volume data could not be copied to the new backend.")
    DRIVER_FAILED_RETYPE = Code("106", "Volume driver failed to retype the volume.")
    DRIVER_FAILED_TRANSFER = Code("107", "Volume driver failed to accept the transfer.")
    IMAGE_COPY_FAILED = Code("108", "The image could not be copied into the volume.")
    KEY_UNAVAILABLE = Code("109", "The encryption key or image secret could not be read.")
    FAILED_TO_UPLOAD_VOLUME = Code("004", "Failed to upload volume to image at image service.")
    SNAPSHOT_DELETE_ERROR = Code("016", "Snapshot failed to delete.")
    ATTACH_ERROR = Code("021", "Failed to attach volume.")
    DETACH_ERROR = Code("022", "Failed to detach volume.")
    VOLUME_INVALID_STATE = Code("027", "Volume status is invalid.")


def _table(namespace: type) -> dict[str, str]:
    return {code.id: code.text for code in vars(namespace).values() if isinstance(code, Code)}


ACTIONS = _table(Action)
DETAILS = _table(Detail)


def user_message(action_id: str, detail_id: str) -> str:
    action = ACTIONS.get(action_id, "unknown action")
    return f"{action}:{DETAILS.get(detail_id, Detail.UNKNOWN_ERROR.text)}"


def event_id(resource_type: str, action_id: str, detail_id: str) -> str:
    return f"VOLUME_{resource_type}_{action_id}_{detail_id}"


def record(
    session: Session,
    *,
    message_id: str,
    project_id: str,
    action: str,
    detail: str,
    resource_uuid: str | None,
    resource_type: str = "VOLUME",
    request_id: str | None = None,
    ttl: float,
) -> None:
    """Insert a message once: `message_id` is derived from the step that reports, so a retried
    step does not report twice."""
    if session.get(Message, message_id) is not None:
        return
    now = utcnow()
    session.add(
        Message(
            id=message_id,
            project_id=project_id,
            request_id=request_id,
            resource_type=resource_type,
            resource_uuid=resource_uuid,
            event_id=event_id(resource_type, action, detail),
            message_level="ERROR",
            action_id=action,
            detail_id=detail,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
    )


class Spec(Protocol):
    """What a workflow asks to record (payloads.UserMessageSpec)."""

    action: str
    detail: str
    resource_type: str
    request_id: str | None


def record_spec(
    session: Session,
    spec: Spec,
    *,
    message_id: str,
    project_id: str,
    resource_uuid: str | None,
    ttl: float,
) -> None:
    """`record` for a workflow's message about one resource."""
    record(
        session,
        message_id=message_id,
        project_id=project_id,
        action=spec.action,
        detail=spec.detail,
        resource_type=spec.resource_type,
        resource_uuid=resource_uuid,
        request_id=spec.request_id,
        ttl=ttl,
    )


def message_id_for(workflow_id: str, step: str) -> str:
    """A stable id for the message a workflow step reports (idempotent under retries)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cinderflow:{workflow_id}:{step}"))
