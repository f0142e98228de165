"""Pydantic payloads exchanged by the API, workflows and activities (Temporal's pydantic converter).

One model per activity input/output and per message (update, query), so fields can be added
compatibly. An operation's own input lives in its workflow module. Nothing here does I/O or
builds values from the clock: workflow code imports it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from cinderflow.drivers.base import EncryptionSpec, SnapshotRef, VolumeRef
from cinderflow.status import ResourceKind


class OperationPolicy(BaseModel):
    """Timeouts and retries fixed when the operation is requested (recorded in history)."""

    driver_heartbeat_timeout_s: float = 30.0
    driver_timeout_s: float = 6 * 3600.0
    driver_max_attempts: int = 5
    driver_queue_timeout_s: float = 3600.0


class OperationOutcome(BaseModel):
    """What an operation's workflow returns: the status it ended its resource in, and why."""

    resource_id: str
    status: str
    detail: str | None = None
    done: bool = True
    """False: the operation was refused and changed nothing (a reset the driver refused)."""


class UserMessageSpec(BaseModel):
    """A user message to record (Cinder's action and detail codes, see user_messages.py)."""

    action: str
    detail: str
    resource_type: str = "VOLUME"
    request_id: str | None = None
    project_id: str | None = None
    """Whose message it is, when not the resource's project (a transfer's receiver)."""


class TransferAccept(BaseModel):
    """What an accepted transfer's final write moves: the volume's project and user (its
    `values`), its snapshots unless `no_snapshots`, their new keys, and the transfer record."""

    transfer_id: str
    project_id: str
    user_id: str
    move_snapshots: bool = True
    snapshot_keys: dict[str, str] = Field(default_factory=dict)
    """Snapshot id -> its key cloned into the receiving project."""


class FinalWrite(BaseModel):
    """The one write that ends an operation on its resource, in one fenced transaction.

    It sets the final status and field changes (or removes the row), releases the volume's
    reservations, removes the operation's admin metadata, ends the reads it held, returns
    the snapshots it still owns, records a user message, and gives up ownership. A reset's
    attach and migration status ride along.
    """

    resource: ResourceKind = ResourceKind.VOLUME
    resource_id: str
    status: str | None = None
    """The final status; None (volumes): what the volume's attachments imply."""
    previous: bool = False
    """End in the status the resource had before the operation (a cancel); error if none."""
    values: dict[str, Any] = Field(default_factory=dict)
    """Field changes committed with the status (the driver's model update, a new size)."""
    remove: bool = False
    """The operation deleted the resource: remove its row instead."""
    part: bool = False
    """The end of a resource the operation owns besides its own (a cascade's snapshot): the
    operation's holds, reservations and other snapshots are left to its own final write."""
    attach_status: str | None = None
    """A reset's attach status: `detached` removes the attachments, `attached` relabels."""
    migration_status: str | None = None
    """A reset's migration status (`none` clears it)."""
    admin_metadata: list[str] = Field(default_factory=list)
    """The operation's admin metadata keys, removed."""
    snapshots: dict[str, str] = Field(default_factory=dict)
    """Statuses for snapshots this operation still owns; the rest get their previous status."""
    exchange_with: str | None = None
    """A migration target whose backend object and attachments the volume exchanges for its
    own (Cinder's finish_volume_migration), before the values are written."""
    transfer: TransferAccept | None = None
    """An accepted transfer: the volume's snapshots and the transfer record go with it."""
    exchange_server: str | None = None
    """The server whose new attachment of the target becomes the volume's."""
    reason: str | None = None
    """Why it ended so (kept in the workflow's result)."""
    message: UserMessageSpec | None = None
    outcome: str | None = None
    """How the operation ended, for its record (db/operation_records.py): `succeeded`,
    `failed`, `reset` or `cancelled`; None: failed if it leaves a user message, else
    succeeded."""


class ResetRequest(BaseModel):
    """An admin's os-reset_status (validated by the API): what the resource should become."""

    resource: ResourceKind = ResourceKind.VOLUME
    resource_id: str
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


class CancelRequest(BaseModel):
    """A user's cancel of an operation (the `cancel` update): who asked, for the record."""

    user_id: str | None = None
    request_id: str | None = None


class ResetOutcome(BaseModel):
    """What a reset did: `done`, or refused with the driver's error (or why not now)."""

    done: bool
    detail: str = ""
    ended: bool = False
    """The operation ended another way before the reset could apply: nothing was reset, the
    resource has a new owner or none (the API then tries again)."""
    lost: bool = False
    """The reset took over, but its write found the resource taken by the operator."""


class OperationProgress(BaseModel):
    """What an operation is doing now (its `progress` query; also its current details)."""

    operation: str
    resource_id: str | None = None
    phase: str = ""
    """In words: what the operation is doing or waiting for."""
    percent: int | None = None
    """How far, where the operation can tell."""
    critical: str | None = None
    """A step running that a reset or cancel must wait for (it cannot be cut short)."""
    reset: str | None = None
    """A reset in progress: waiting for the critical step, at the backend, or taking over."""
    finishing: bool = False
    """The final write has begun; resets are refused."""
    cancellable: bool = False
    """The `cancel` update is taken now (a step that stops cleanly runs, nothing refuses)."""
    cancelling: bool = False
    """A cancel was asked for: the operation is stopping and undoing what it made."""
    updated_at: datetime | None = None
    """When this changed last (workflow time)."""


# Activity payloads ------------------------------------------------------------------------------


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


class ExtendRequest(BaseModel):
    volume: VolumeRef
    new_size: int


class ExtendCheck(BaseModel):
    volume_id: str
    new_size: int
    online: bool


REQUEST_TIME_PLAN = "plan"
"""The input field in which any operation carries what the API read in the transaction that
handed the resource over (`ExtendInput.plan`). The outbox sweeper's late starts leave it out:
by then it may be stale, and the workflow reads afresh, fenced by its ownership."""


class ExtendPlan(BaseModel):
    """What an extend reads before the driver's resize, in one step: the volume, why its
    backend cannot grow it (None: it can), and the servers it is attached to (an extending
    volume cannot be attached or detached, so they stay)."""

    volume: VolumeRef
    refused: str | None = None
    servers: list[str] = []


class ExtendCompletion(BaseModel):
    """What the compute answers (os-extend_volume_completion): did it extend the disk?"""

    error: bool = False


class RetypeCheck(BaseModel):
    """What a retype (or an administrator's migration) asks the scheduler."""

    volume_id: str
    new_type_id: str
    migration_policy: str = "never"
    host: str | None = None
    """An administrator's migration: the backend (`<host>@<backend>[#pool]`) to move to."""


class NewType(BaseModel):
    """The type a volume is retyped to, as its driver and its destination need it."""

    id: str
    name: str
    extra_specs: dict[str, str] = Field(default_factory=dict)
    encryption: EncryptionSpec | None = None

    @property
    def multiattach(self) -> bool:
        """Volumes of the type may be attached to several servers (Cinder's extra spec)."""
        return self.extra_specs.get("multiattach") == "<is> True"


class RetypePlan(BaseModel):
    """What a retype reads before it changes anything: the volume, the new type and how
    it differs, where the volume should live under it, and what would block a migration."""

    volume: VolumeRef
    new_type: NewType
    diff: dict[str, Any] = Field(default_factory=dict)
    host: str | None = None
    """The backend (pool host) the volume fits under the new type; its own if that fits."""
    refused: str | None = None
    """Why no backend fits (the scheduler's reasons); None: `host` is set."""
    snapshots: int = 0
    servers: list[str] = Field(default_factory=list)
    attachments: int = 0
    """Live attachments: any means the volume is in use and only its compute can copy."""
    unnamed_attachments: int = 0
    """Attachments that name no server (no compute could swap those)."""

    @property
    def same_backend(self) -> bool:
        return self.host is not None and self.host == self.volume.host


class RetypeRequest(BaseModel):
    """The driver's in-place retype (`SupportsRetype.retype`) on the volume's backend."""

    volume: VolumeRef
    new_type: NewType
    diff: dict[str, Any]
    host: str


class Retyped(BaseModel):
    done: bool
    """False: the driver cannot change it in place (the data must be copied)."""
    update: dict[str, Any] = Field(default_factory=dict)


class VolumeCopy(BaseModel):
    """A migration's data copy, run by the destination's driver from the source's export."""

    target: VolumeRef
    source: VolumeRef
    source_connection: dict[str, Any]


class MigrationKey(BaseModel):
    """The destination's new encryption key, recorded on the volume's admin metadata."""

    volume_id: str
    new_type_id: str


class MigrationTarget(BaseModel):
    """The temporary volume row of an attached volume's migration (db/migration_targets.py)."""

    source_id: str
    target_id: str
    values: dict[str, Any]
    """volume_type_id, host, provider_location, encryption_key_id of the destination."""


class SwapRequest(BaseModel):
    """Ask the compute to move a server's disk from one volume to another (swap volume)."""

    server_id: str
    old_volume_id: str
    new_volume_id: str


class MigrationCompletion(BaseModel):
    """The compute's answer to a swap (os-migrate_volume_completion)."""

    new_volume: str
    error: bool = False


class MigrationCompleted(BaseModel):
    save_volume_id: str
    """The volume id the compute keeps using (the source's: it keeps its id)."""


class TransferRequest(BaseModel):
    """The driver's `accept_transfer` (SupportsTransfer) on the volume's backend."""

    volume: VolumeRef
    new_user: str
    new_project: str


class TransferKeys(BaseModel):
    """Clone the keys of a transferred volume (and its snapshots) into the receiving project."""

    volume_id: str
    to_project: str
    snapshots: bool = True


class ClonedKeys(BaseModel):
    volume_key: str | None = None
    snapshot_keys: dict[str, str] = Field(default_factory=dict)
    old_keys: list[str] = Field(default_factory=list)
    """The sending project's keys, deleted once the transfer is committed."""
    from_project: str = ""


class VolumeKey(BaseModel):
    project_id: str
    key_id: str


class StatusChange(BaseModel):
    volume_id: str
    status: str


class MigrationState(BaseModel):
    volume_id: str
    migration_status: str


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


class DriverReset(BaseModel):
    volume: VolumeRef
    status: str
    attach_status: str | None = None


class ImageIdentity(BaseModel):
    """Who the image service calls act for (ids and roles, never a token)."""

    user_id: str
    project_id: str
    roles: list[str] = Field(default_factory=list)


class ImageSource(BaseModel):
    """What creating a volume needs of a Glance image (images.image_source)."""

    id: str
    name: str | None = None
    status: str = ""
    disk_format: str
    container_format: str = "bare"
    size: int = 0
    """Bytes of the image's data as stored."""
    virtual_size: int | None = None
    min_disk: int = 0
    checksum: str | None = None
    encrypted: bool = False
    key_id: str | None = None
    """The image's secret (`os_encrypt_key_id`, or the legacy `cinder_encryption_key_id`)."""
    decrypt_size: int | None = None
    """`os_decrypt_size`: the bytes the guest sees once decrypted."""

    @property
    def raw_luks(self) -> bool:
        """Encrypted as LUKS over the whole file (Cinder's own uploads): the volume takes a
        clone of the image's secret and the ciphertext as it is."""
        return self.encrypted and self.disk_format in ("raw", "luks")


class ImageToVolume(BaseModel):
    """Fill a new volume from an image, on the volume's backend."""

    volume: VolumeRef
    image: ImageSource
    identity: ImageIdentity


class VolumeToImage(BaseModel):
    """Write a volume into an image record that exists (queued), on the volume's backend."""

    volume: VolumeRef
    image_id: str
    disk_format: str
    identity: ImageIdentity


class ImageRecord(BaseModel):
    """The image an upload makes: created with this id, these fields and properties."""

    image_id: str
    body: dict[str, Any]
    identity: ImageIdentity


class ImageKeyClone(BaseModel):
    """The clone of an encrypted volume's key an uploaded image gets."""

    volume_id: str
    image_id: str
    image_project_id: str = ""
    """The image's owner (who uploaded it; an admin uploading a project's volume owns the
    image), as whom the key sweep asks whether the image still exists."""
