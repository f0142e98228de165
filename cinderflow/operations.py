"""The long operations the API can request: which workflow, with what input and summary.

Each function returns the outbox entry to commit with the state change that starts it; its
workflow id is also written to `volumes.workflow_id`, making that workflow the volume's owner.
"""

from __future__ import annotations

from pydantic import BaseModel

from cinderflow.db.models import OutboxEntry, Volume
from cinderflow.payloads import CreateVolumeInput, DeleteVolumeInput, OperationPolicy
from cinderflow.settings import Settings
from cinderflow.temporal.outbox import volume_operation


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
    return _volume_entry(settings, volume, "create", "CreateVolume", payload)


def delete_volume(settings: Settings, volume: Volume, request_id: str | None) -> OutboxEntry:
    payload = DeleteVolumeInput(volume_id=volume.id, policy=policy(settings), request_id=request_id)
    return _volume_entry(settings, volume, "delete", "DeleteVolume", payload)


def _volume_entry(
    settings: Settings, volume: Volume, operation: str, workflow_type: str, payload: BaseModel
) -> OutboxEntry:
    return volume_operation(
        workflow_type=workflow_type,
        operation=operation,
        volume_id=volume.id,
        project_id=volume.project_id,
        task_queue=settings.control_task_queue,
        payload=payload,
        summary=f"{operation} {volume.size} GiB volume {label(volume)}",
    )
