"""The long operations the API can request: which workflow, with what input and summary.

Each function returns the outbox entry to commit with the state change that starts it; its
workflow id is also written to `volumes.workflow_id`, making that workflow the volume's owner.
"""

from __future__ import annotations

from pydantic import BaseModel

from cinderflow.db.models import Attachment, OutboxEntry, Snapshot, Volume
from cinderflow.payloads import (
    AttachmentInput,
    CreateVolumeInput,
    DeleteVolumeInput,
    ExtendInput,
    OperationPolicy,
    ResetRequest,
    SnapshotInput,
)
from cinderflow.settings import Settings
from cinderflow.temporal.outbox import new_entry, workflow_id


def policy(settings: Settings) -> OperationPolicy:
    return OperationPolicy(
        driver_heartbeat_timeout_s=settings.driver_heartbeat_timeout,
        driver_timeout_s=settings.driver_timeout,
        driver_max_attempts=settings.driver_max_attempts,
        driver_queue_timeout_s=settings.driver_queue_timeout,
    )


def label(volume: Volume) -> str:
    return f"{volume.name} ({volume.id})" if volume.name else volume.id


def create_volume(settings: Settings, volume: Volume, request_id: str | None) -> OutboxEntry:
    payload = CreateVolumeInput(volume_id=volume.id, policy=policy(settings), request_id=request_id)
    source = ""
    if volume.snapshot_id:
        source = f" from snapshot {volume.snapshot_id}"
    elif volume.source_volid:
        source = f" from volume {volume.source_volid}"
    return _volume_entry(settings, volume, "create", "CreateVolume", payload, source)


def delete_volume(
    settings: Settings, volume: Volume, request_id: str | None, *, cascade: bool = False
) -> OutboxEntry:
    payload = DeleteVolumeInput(
        volume_id=volume.id, policy=policy(settings), request_id=request_id, cascade=cascade
    )
    return _volume_entry(settings, volume, "delete", "DeleteVolume", payload)


def _volume_entry(
    settings: Settings,
    volume: Volume,
    operation: str,
    workflow_type: str,
    payload: BaseModel,
    detail: str = "",
) -> OutboxEntry:
    return new_entry(
        workflow_id=workflow_id("volume", volume.id, operation),
        workflow_type=workflow_type,
        operation=operation,
        volume_id=volume.id,
        project_id=volume.project_id,
        task_queue=settings.control_task_queue,
        payload=payload,
        summary=f"{operation} {volume.size} GiB volume {label(volume)}{detail}",
    )


def extend_volume(
    settings: Settings, volume: Volume, new_size: int, request_id: str | None
) -> OutboxEntry:
    payload = ExtendInput(
        volume_id=volume.id,
        new_size=new_size,
        previous_status=volume.status,
        policy=policy(settings),
        request_id=request_id,
        completion_timeout_s=settings.extend_completion_timeout,
    )
    detail = f" to {new_size} GiB" + (" (attached)" if volume.status == "in-use" else "")
    return _volume_entry(settings, volume, "extend", "ExtendVolume", payload, detail)


def reset_volume(settings: Settings, volume: Volume, request: ResetRequest) -> OutboxEntry:
    detail = f" to {request.status}" + (
        f", attach status {request.attach_status}" if request.attach_status else ""
    )
    return _volume_entry(settings, volume, "reset", "ResetVolume", request, detail)


def create_snapshot(settings: Settings, snapshot: Snapshot, request_id: str | None) -> OutboxEntry:
    return _snapshot_entry(settings, snapshot, "create_snapshot", "CreateSnapshot", request_id)


def delete_snapshot(settings: Settings, snapshot: Snapshot, request_id: str | None) -> OutboxEntry:
    return _snapshot_entry(settings, snapshot, "delete_snapshot", "DeleteSnapshot", request_id)


def _snapshot_entry(
    settings: Settings,
    snapshot: Snapshot,
    operation: str,
    workflow_type: str,
    request_id: str | None,
) -> OutboxEntry:
    """Snapshot workflows carry their volume's VolumeId search attribute."""
    name = f"{snapshot.name} ({snapshot.id})" if snapshot.name else snapshot.id
    return new_entry(
        workflow_id=workflow_id("snapshot", snapshot.id, operation),
        workflow_type=workflow_type,
        operation=operation,
        volume_id=snapshot.volume_id,
        project_id=snapshot.project_id,
        task_queue=settings.control_task_queue,
        payload=SnapshotInput(
            snapshot_id=snapshot.id, policy=policy(settings), request_id=request_id
        ),
        summary=f"{operation.replace('_', ' ')} {name} of volume {snapshot.volume_id}",
    )


def connect_attachment(
    settings: Settings, attachment: Attachment, request_id: str | None
) -> OutboxEntry:
    return _attachment_entry(settings, attachment, "attach", "ConnectAttachment", request_id)


def disconnect_attachment(
    settings: Settings, attachment: Attachment, request_id: str | None
) -> OutboxEntry:
    return _attachment_entry(settings, attachment, "detach", "DisconnectAttachment", request_id)


def _attachment_entry(
    settings: Settings,
    attachment: Attachment,
    operation: str,
    workflow_type: str,
    request_id: str | None,
) -> OutboxEntry:
    host = (attachment.connector or {}).get("host", "?")
    return new_entry(
        workflow_id=workflow_id("attachment", attachment.id, operation),
        workflow_type=workflow_type,
        operation=operation,
        volume_id=attachment.volume_id,
        project_id=attachment.project_id,
        task_queue=settings.control_task_queue,
        payload=AttachmentInput(
            attachment_id=attachment.id, policy=policy(settings), request_id=request_id
        ),
        summary=f"{operation} volume {attachment.volume_id} for {host} ({attachment.id})",
    )
