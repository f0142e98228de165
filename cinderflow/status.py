"""The status vocabularies: every status a volume, snapshot or attachment can have, in Cinder's
words (`cinder/objects/fields.py`), so code compares members instead of free strings.

Members are `str`s: they are stored, sent and compared as the plain Cinder values. This module
is imported by workflow code, so it stays free of I/O.
"""

from __future__ import annotations

from enum import StrEnum


class VolumeStatus(StrEnum):
    """Cinder's VolumeStatus, in Cinder's order (the reset-status 400 lists them so)."""

    CREATING = "creating"
    AVAILABLE = "available"
    DELETING = "deleting"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"
    ERROR_MANAGING = "error_managing"
    MANAGING = "managing"
    ATTACHING = "attaching"
    IN_USE = "in-use"
    DETACHING = "detaching"
    MAINTENANCE = "maintenance"
    RESTORING_BACKUP = "restoring-backup"
    ERROR_RESTORING = "error_restoring"
    RESERVED = "reserved"
    AWAITING_TRANSFER = "awaiting-transfer"
    BACKING_UP = "backing-up"
    ERROR_BACKING_UP = "error_backing-up"
    ERROR_EXTENDING = "error_extending"
    DOWNLOADING = "downloading"
    UPLOADING = "uploading"
    RETYPING = "retyping"
    EXTENDING = "extending"


class SnapshotStatus(StrEnum):
    """Cinder's SnapshotStatus, in Cinder's order."""

    ERROR = "error"
    AVAILABLE = "available"
    CREATING = "creating"
    DELETING = "deleting"
    DELETED = "deleted"
    UPDATING = "updating"
    ERROR_DELETING = "error_deleting"
    UNMANAGING = "unmanaging"
    BACKING_UP = "backing-up"
    RESTORING = "restoring"


class AttachStatus(StrEnum):
    """An attachment's status, and a volume's `attach_status` (the first two, mostly)."""

    ATTACHED = "attached"
    DETACHED = "detached"
    ATTACHING = "attaching"
    DETACHING = "detaching"
    RESERVED = "reserved"
    ERROR_ATTACHING = "error_attaching"
    ERROR_DETACHING = "error_detaching"


class MigrationStatus(StrEnum):
    """What os-reset_status accepts as `migration_status` (`none` clears it)."""

    MIGRATING = "migrating"
    ERROR = "error"
    SUCCESS = "success"
    COMPLETING = "completing"
    NONE = "none"
    STARTING = "starting"


class ResourceKind(StrEnum):
    """What an operation owns (its workflow id starts with it)."""

    VOLUME = "volume"
    SNAPSHOT = "snapshot"
    ATTACHMENT = "attachment"


class OperationStatus(StrEnum):
    """How an operation stands in the operations API (db/operation_records.py)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RESET = "reset"
    CANCELLED = "cancelled"
