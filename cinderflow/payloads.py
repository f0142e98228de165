"""Pydantic payloads exchanged by the API, workflows and activities (Temporal's pydantic converter).

One model per workflow input and per activity input/output, so fields can be added compatibly.
Nothing here does I/O or builds values from the clock: workflow code imports it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from cinderflow.drivers.base import SnapshotRef, VolumeRef


class OperationPolicy(BaseModel):
    """Timeouts and retries fixed when the operation is requested (recorded in history)."""

    driver_heartbeat_timeout_s: float = 30.0
    driver_timeout_s: float = 6 * 3600.0
    driver_max_attempts: int = 5
    driver_queue_timeout_s: float = 3600.0


class CreateVolumeInput(BaseModel):
    volume_id: str
    policy: OperationPolicy = Field(default_factory=OperationPolicy)
    request_id: str | None = None
    """The API request that asked for it, carried into user messages."""


class DeleteVolumeInput(BaseModel):
    volume_id: str
    policy: OperationPolicy = Field(default_factory=OperationPolicy)
    request_id: str | None = None
    cascade: bool = False
    """Delete the volume's snapshots first (the API gave them to this workflow)."""


class SnapshotInput(BaseModel):
    """Input of CreateSnapshot and DeleteSnapshot."""

    snapshot_id: str
    policy: OperationPolicy = Field(default_factory=OperationPolicy)
    request_id: str | None = None


class OperationOutcome(BaseModel):
    """What a volume workflow returns: the final status it wrote and why."""

    volume_id: str
    status: str
    detail: str | None = None


class Placement(BaseModel):
    """The scheduler's answer: the volume (with its new host) and what it is created from,
    or why no backend fits."""

    volume: VolumeRef | None = None
    snapshot: SnapshotRef | None = None
    source_volume: VolumeRef | None = None
    reason: str | None = None


class VolumeFromSnapshot(BaseModel):
    volume: VolumeRef
    snapshot: SnapshotRef


class VolumeClone(BaseModel):
    volume: VolumeRef
    source: VolumeRef


class UserMessageSpec(BaseModel):
    """A user message to record (Cinder's action and detail codes, see user_messages.py)."""

    action: str
    detail: str
    resource_type: str = "VOLUME"
    request_id: str | None = None


class AttachmentInput(BaseModel):
    """Input of ConnectAttachment and DisconnectAttachment."""

    attachment_id: str
    policy: OperationPolicy = Field(default_factory=OperationPolicy)
    request_id: str | None = None


class Connection(BaseModel):
    """A driver (de)export: the volume and the consumer's connector."""

    attachment_id: str
    volume: VolumeRef
    connector: dict[str, Any] = Field(default_factory=dict)
    attach_mode: str = "rw"


class Connected(BaseModel):
    attachment_id: str
    connection_info: dict[str, Any]


class AttachmentFailure(BaseModel):
    attachment_id: str
    status: str
    """error_attaching or error_detaching."""
    message: UserMessageSpec


class ExtendInput(BaseModel):
    volume_id: str
    new_size: int
    previous_status: str
    """available (offline extend) or in-use (online); where a refused placement returns."""
    policy: OperationPolicy = Field(default_factory=OperationPolicy)
    request_id: str | None = None
    completion_timeout_s: float = 600.0


class ExtendRequest(BaseModel):
    volume: VolumeRef
    new_size: int


class ExtendCheck(BaseModel):
    volume_id: str
    new_size: int
    online: bool


class ExtendFinish(BaseModel):
    """End an extend: commit (`new_size`) or roll back (None) the reservation, drop the
    completion keys, and set the status (None: derive it from the attachments)."""

    volume_id: str
    new_size: int | None = None
    status: str | None = None
    reason: str | None = None
    message: UserMessageSpec | None = None


class ExtendCompletion(BaseModel):
    """What the compute answers (os-extend_volume_completion): did it extend the disk?"""

    error: bool = False


class VolumeMessage(BaseModel):
    """A user message about a volume that changes no status (a best-effort step failed)."""

    volume_id: str
    message: UserMessageSpec


class ComputeEvent(BaseModel):
    server_uuids: list[str]
    volume_id: str
    requires_completion: bool = False
    """The compute must answer with os-extend_volume_completion (sent at the completion
    microversion, so a compute without that support refuses the event)."""


class Finish(BaseModel):
    """Release ownership of a volume or snapshot with a final status (and the driver's model
    update), recording a user message in the same transaction when the operation failed."""

    resource_id: str
    status: str
    model_update: dict[str, Any] = Field(default_factory=dict)
    reason: str | None = None
    message: UserMessageSpec | None = None


class ResetRequest(BaseModel):
    """An admin's os-reset_status (validated by the API): what the volume should become."""

    volume_id: str
    current_status: str
    """The status before the reset (kept if the reset is refused)."""
    status: str
    """The status to end in (already derived when only attach_status was given)."""
    attach_status: str | None = None
    migration_status: str | None = None
    force: bool = False
    """Reset even if the driver fails (its error is only reported)."""
    request_id: str | None = None
    policy: OperationPolicy = Field(default_factory=OperationPolicy)


class ResetOutcome(BaseModel):
    """What a reset did: `done`, or refused with the driver's error."""

    done: bool
    detail: str = ""


class DriverReset(BaseModel):
    volume: VolumeRef
    status: str
    attach_status: str | None = None


class ResetApply(BaseModel):
    """The database half of a reset, written by the volume's owner in one transaction."""

    request: ResetRequest
    reason: str | None = None
    """What the reset did or overrode (recorded as the volume's last outcome)."""
    message: UserMessageSpec | None = None
