"""SQLModel tables. Rows never travel as Temporal payloads: activities convert them to DTOs.

Times are timezone-aware UTC; views render them in Cinder's naive ISO format.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite may hand them back naive: they were
    stored in UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class VolumeType(SQLModel, table=True):
    __tablename__ = "volume_types"

    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=255, unique=True)
    description: str | None = Field(default=None, max_length=255)
    is_public: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime | None = None


class VolumeTypeExtraSpec(SQLModel, table=True):
    __tablename__ = "volume_type_extra_specs"

    volume_type_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("volume_types.id", ondelete="CASCADE"), primary_key=True
        )
    )
    key: str = Field(primary_key=True, max_length=255)
    value: str = Field(max_length=255)


class Volume(SQLModel, table=True):
    __tablename__ = "volumes"

    id: str = Field(primary_key=True, max_length=36)
    project_id: str = Field(index=True, max_length=255)
    user_id: str = Field(max_length=255)
    name: str | None = Field(default=None, max_length=255)
    description: str | None = Field(default=None, max_length=255)
    size: int
    status: str = Field(max_length=32, index=True)
    attach_status: str = Field(default="detached", max_length=32)
    migration_status: str | None = Field(default=None, max_length=255)
    previous_status: str | None = Field(default=None, max_length=32)
    """The status before the operation that owns the volume began (what a stop returns to)."""
    availability_zone: str = Field(max_length=255)
    volume_type_id: str = Field(foreign_key="volume_types.id", max_length=36)
    host: str | None = Field(default=None, max_length=255)
    """`<host>@<backend>#<pool>` once scheduled."""
    provider_location: str | None = Field(default=None, max_length=1024)
    provider_id: str | None = Field(default=None, max_length=255)
    name_id: str | None = Field(default=None, max_length=36)
    """The id the backend object is named after when it is not the volume's own (a migrated
    volume keeps its id; its data is the destination's, `volume-<name_id>`), Cinder's."""
    snapshot_id: str | None = Field(default=None, max_length=36)
    source_volid: str | None = Field(default=None, max_length=36)
    bootable: bool = False
    multiattach: bool = False
    encryption_key_id: str | None = Field(default=None, max_length=36)
    consumes_quota: bool = True
    workflow_id: str | None = Field(default=None, max_length=255)
    """The workflow that owns this volume; while set, only that workflow writes `status`."""
    last_workflow_id: str | None = Field(default=None, max_length=255)
    """The workflow that last released ownership: lets a retried final step see it already ran."""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime | None = None


class VolumeMetadata(SQLModel, table=True):
    __tablename__ = "volume_metadata"

    volume_id: str = Field(
        sa_column=Column(String(36), ForeignKey("volumes.id", ondelete="CASCADE"), primary_key=True)
    )
    key: str = Field(primary_key=True, max_length=255)
    value: str = Field(max_length=255)


class VolumeImageMetadata(SQLModel, table=True):
    """What a volume made from an image keeps of it (Cinder's `volume_glance_metadata`):
    shown as `volume_image_metadata`, filtered on by `glance_metadata`, and written into the
    properties of an image uploaded from the volume."""

    __tablename__ = "volume_image_metadata"

    volume_id: str = Field(
        sa_column=Column(String(36), ForeignKey("volumes.id", ondelete="CASCADE"), primary_key=True)
    )
    key: str = Field(primary_key=True, max_length=255)
    value: str = Field(sa_column=Column(Text, nullable=False))


class UploadedImageKey(SQLModel, table=True):
    """A key cloned for an image uploaded from an encrypted volume (deletion policy
    `on_image_deletion`): deleted once the image is gone. An image service sharing the key
    manager deletes it itself; with the `local` one only cinderflow can (worker sweep)."""

    __tablename__ = "image_keys"

    key_id: str = Field(primary_key=True, max_length=255)
    image_id: str = Field(index=True, max_length=36)
    project_id: str = Field(max_length=255)
    """The key's project (the volume's)."""
    image_project_id: str = Field(max_length=255)
    """The image's owner, as whom the sweep asks the image service."""
    volume_id: str = Field(max_length=36)
    missing_since: datetime | None = None
    """When a sweep first found the image gone (the key goes `image_key_grace` later)."""
    created_at: datetime = Field(default_factory=utcnow)


class VolumeAdminMetadata(SQLModel, table=True):
    __tablename__ = "volume_admin_metadata"

    volume_id: str = Field(
        sa_column=Column(String(36), ForeignKey("volumes.id", ondelete="CASCADE"), primary_key=True)
    )
    key: str = Field(primary_key=True, max_length=255)
    value: str = Field(max_length=255)


class Service(SQLModel, table=True):
    """A reporting service; `cinder-volume` has one row per backend (`<host>@<backend>`)."""

    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("host", "binary"),)

    id: int | None = Field(default=None, primary_key=True)
    host: str = Field(max_length=255)
    binary: str = Field(max_length=64)
    availability_zone: str = Field(max_length=255)
    disabled: bool = False
    disabled_reason: str | None = Field(default=None, max_length=255)
    capabilities: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    """The driver's last `get_volume_stats()`."""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime | None = None
    """Time of the last report: the heartbeat."""


class OutboxEntry(SQLModel, table=True):
    """A workflow to start, written in the same transaction as the state change that needs it.

    The API starts it right after commit and deletes the row; if anything crashes in between,
    a worker's sweeper starts it. Starting is idempotent (deterministic workflow id).
    """

    __tablename__ = "workflow_outbox"

    workflow_id: str = Field(primary_key=True, max_length=255)
    workflow_type: str = Field(max_length=255)
    task_queue: str = Field(max_length=255)
    input: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    operation: str = Field(max_length=64)
    volume_id: str | None = Field(default=None, max_length=36)
    project_id: str | None = Field(default=None, max_length=255)
    summary: str = Field(default="", max_length=1024)
    created_at: datetime = Field(default_factory=utcnow)


class VolumeTypeProject(SQLModel, table=True):
    """A project's access to a private volume type."""

    __tablename__ = "volume_type_projects"

    volume_type_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("volume_types.id", ondelete="CASCADE"), primary_key=True
        )
    )
    project_id: str = Field(primary_key=True, max_length=255)


class Encryption(SQLModel, table=True):
    """A volume type's encryption spec (Cinder's `encryption` table)."""

    __tablename__ = "encryption"

    id: str = Field(primary_key=True, max_length=36)
    volume_type_id: str = Field(
        sa_column=Column(
            String(36),
            ForeignKey("volume_types.id", ondelete="CASCADE"),
            unique=True,
            nullable=False,
        )
    )
    provider: str = Field(max_length=255)
    control_location: str = Field(max_length=255)
    cipher: str | None = Field(default=None, max_length=255)
    key_size: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime | None = None


class Snapshot(SQLModel, table=True):
    __tablename__ = "snapshots"

    id: str = Field(primary_key=True, max_length=36)
    volume_id: str = Field(foreign_key="volumes.id", index=True, max_length=36)
    project_id: str = Field(index=True, max_length=255)
    user_id: str = Field(max_length=255)
    name: str | None = Field(default=None, max_length=255)
    description: str | None = Field(default=None, max_length=255)
    status: str = Field(max_length=32)
    previous_status: str | None = Field(default=None, max_length=32)
    """The status before the operation that owns the snapshot began (what a stop returns to)."""
    progress: str | None = Field(default=None, max_length=255)
    volume_size: int
    """Size of the volume when the snapshot was taken (GiB); what quotas count."""
    volume_type_id: str = Field(foreign_key="volume_types.id", max_length=36)
    provider_location: str | None = Field(default=None, max_length=1024)
    encryption_key_id: str | None = Field(default=None, max_length=36)
    workflow_id: str | None = Field(default=None, max_length=255)
    last_workflow_id: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime | None = None


class SnapshotMetadata(SQLModel, table=True):
    __tablename__ = "snapshot_metadata"

    snapshot_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("snapshots.id", ondelete="CASCADE"), primary_key=True
        )
    )
    key: str = Field(primary_key=True, max_length=255)
    value: str = Field(max_length=255)


class Attachment(SQLModel, table=True):
    """Cinder's `volume_attachment`: one consumer (instance/host) of a volume."""

    __tablename__ = "volume_attachments"

    id: str = Field(primary_key=True, max_length=36)
    volume_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("volumes.id", ondelete="CASCADE"), index=True, nullable=False
        )
    )
    instance_uuid: str | None = Field(default=None, max_length=36)
    attached_host: str | None = Field(default=None, max_length=255)
    mountpoint: str | None = Field(default=None, max_length=255)
    attach_mode: str | None = Field(default=None, max_length=36)
    attach_status: str = Field(max_length=255)
    connector: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    connection_info: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    attach_time: datetime | None = None
    detach_time: datetime | None = None
    workflow_id: str | None = Field(default=None, max_length=255)
    """The connect/disconnect workflow that owns this attachment (not its volume)."""
    last_workflow_id: str | None = Field(default=None, max_length=255)
    project_id: str = Field(index=True, max_length=255)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime | None = None


class Quota(SQLModel, table=True):
    """A project's limit for one resource, overriding the default."""

    __tablename__ = "quotas"

    project_id: str = Field(primary_key=True, max_length=255)
    resource: str = Field(primary_key=True, max_length=300)
    hard_limit: int


class QuotaLock(SQLModel, table=True):
    """One row per project, locked (`FOR UPDATE`) by every transaction that counts usage
    and then adds resources, so parallel requests of a project are serialised."""

    __tablename__ = "quota_locks"

    project_id: str = Field(primary_key=True, max_length=255)


class UsageCount(SQLModel, table=True):
    """How many volumes (or snapshots) of a type a project has and their gigabytes.

    Kept by database triggers on `volumes` and `snapshots` (migration 0005) in the same
    transaction as the row change, so the quota check reads a few rows instead of counting
    the project's volumes. Never written by code."""

    __tablename__ = "usage_counts"

    project_id: str = Field(primary_key=True, max_length=255)
    kind: str = Field(primary_key=True, max_length=16)
    """`volumes` (rows that consume quota) or `snapshots`."""
    volume_type_id: str = Field(primary_key=True, max_length=36)
    count: int
    gigabytes: int


class Reservation(SQLModel, table=True):
    """Quota held for an operation in flight (extend, retype, transfer), keyed by volume."""

    __tablename__ = "reservations"

    id: int | None = Field(default=None, primary_key=True)
    volume_id: str = Field(index=True, max_length=36)
    project_id: str = Field(index=True, max_length=255)
    resource: str = Field(max_length=300)
    delta: int
    created_at: datetime = Field(default_factory=utcnow)


class Message(SQLModel, table=True):
    """A user message about an asynchronous failure (Cinder's `messages`)."""

    __tablename__ = "messages"

    id: str = Field(primary_key=True, max_length=36)
    project_id: str = Field(index=True, max_length=255)
    request_id: str | None = Field(default=None, max_length=255)
    resource_type: str | None = Field(default=None, max_length=255)
    resource_uuid: str | None = Field(default=None, max_length=255)
    event_id: str = Field(max_length=255)
    message_level: str = Field(max_length=255)
    action_id: str = Field(max_length=10)
    detail_id: str = Field(max_length=10)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)


class KeyRecord(SQLModel, table=True):
    """A secret of the local key manager, sealed with AES-256-GCM under the master key."""

    __tablename__ = "keys"

    id: str = Field(primary_key=True, max_length=36)
    project_id: str = Field(index=True, max_length=255)
    object_type: str = Field(max_length=32)
    algorithm: str | None = Field(default=None, max_length=64)
    bit_length: int | None = None
    name: str | None = Field(default=None, max_length=255)
    nonce: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Hold(SQLModel, table=True):
    """An operation reading a resource (a snapshot's volume, a clone's source): while the
    hold exists, operations that would change the resource (extend, delete, retype,
    transfer) are refused. Written with the reader's hand-over, removed by its final write."""

    __tablename__ = "holds"

    resource_id: str = Field(primary_key=True, max_length=36)
    workflow_id: str = Field(primary_key=True, max_length=255)
    """The reading operation's workflow."""
    resource_type: str = Field(max_length=32)
    """volume or snapshot."""
    holder_id: str = Field(max_length=36)
    """What the reader makes from it (the snapshot, the clone), named in refusals."""
    operation: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class Transfer(SQLModel, table=True):
    """A volume transfer (Cinder's `transfers`): the auth key only as a salted hash. An
    accepted or deleted transfer keeps its row (`deleted`), with the receiving project."""

    __tablename__ = "volume_transfers"

    id: str = Field(primary_key=True, max_length=36)
    volume_id: str = Field(index=True, max_length=36)
    name: str | None = Field(default=None, max_length=255)
    salt: str = Field(max_length=255)
    crypt_hash: str = Field(max_length=255)
    no_snapshots: bool = False
    source_project_id: str = Field(index=True, max_length=255)
    destination_project_id: str | None = Field(default=None, max_length=255)
    accepted: bool = False
    deleted: bool = Field(default=False, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime | None = None
    deleted_at: datetime | None = None


class OperationRecord(SQLModel, table=True):
    """An operation as the operations API shows it: written by the hand-over, in the
    transaction that gives the resource to the workflow, and ended by the final write, in the
    transaction that ends the operation. Live phase and progress come from the workflow's
    `progress` query; kept for `operation_retention` seconds after it ended."""

    __tablename__ = "operations"
    __table_args__ = (Index("ix_operations_project_created", "project_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=36)
    """The operation's public id (the workflow id stays with operators and admins)."""
    workflow_id: str = Field(max_length=255, unique=True)
    operation: str = Field(max_length=64)
    resource_type: str = Field(max_length=32)
    resource_id: str = Field(index=True, max_length=36)
    volume_id: str | None = Field(default=None, index=True, max_length=36)
    project_id: str = Field(max_length=255)
    """The resource's project when the operation was asked for."""
    caller_project_id: str | None = Field(default=None, max_length=255, index=True)
    """The asking project, where the operation is shown to it too (a transfer's receiver);
    then who asked: user and request."""
    user_id: str | None = Field(default=None, max_length=255)
    request_id: str | None = Field(default=None, max_length=255)
    summary: str = Field(default="", max_length=1024)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    finished_at: datetime | None = None
    status: str | None = Field(default=None, max_length=32)
    """`succeeded`, `failed`, `reset` or `cancelled` once its final write ran; None before."""
    detail: str | None = Field(default=None, max_length=2048)
    """Why it ended so (the last error of a failed one), for admins: it may name hosts."""
    user_message: str | None = Field(default=None, max_length=255)
    """The user message its end recorded (Cinder's wording), what members see as its error."""


class IdempotencyKey(SQLModel, table=True):
    """A client's `Idempotency-Key` of an operation-starting POST, claimed in the transaction
    of the state change it made; the response is kept for a repeat of the same request."""

    __tablename__ = "idempotency_keys"

    project_id: str = Field(primary_key=True, max_length=255)
    key: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(max_length=64)
    """SHA-256 of method, path, microversion and body: another request under the key is 409."""
    claim_id: str = Field(max_length=32)
    """The claiming request's own id: only it stores the response."""
    resource_id: str | None = Field(default=None, max_length=36)
    """What the first request changed, named if its answer was lost (its API died)."""
    status_code: int | None = None
    """The response's status; None while the first request is still answering."""
    response: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    content_type: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow, index=True)
