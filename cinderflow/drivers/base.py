"""The volume driver interface, after Cinder's `cinder/interface/volume_driver.py`.

A driver is synchronous and talks to one backend. cinderflow calls it only from activities on the
backend's task queue, in a worker thread, so blocking I/O is fine. Every method may be called
more than once for the same request, and a call cannot be interrupted: an attempt that lost its
worker's heartbeat may still finish after a newer attempt did. So each method must be idempotent
and safe to complete late: creating what already exists must keep its data, deleting what is
already gone is success.

Drivers receive `VolumeRef`/`SnapshotRef` DTOs, never database rows. This module is imported by
workflow code, so it must stay free of I/O and heavy imports.
"""

from __future__ import annotations

import abc
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

REQUIRED_STATS = (
    "volume_backend_name",
    "vendor_name",
    "driver_version",
    "storage_protocol",
    "total_capacity_gb",
    "free_capacity_gb",
)
"""Keys every `get_volume_stats()` must return (Cinder's list), besides our `backend_state`."""


class EncryptionSpec(BaseModel):
    """The volume type's encryption: `provider` is the short name (luks, luks2, plain)."""

    provider: str
    control_location: str = "front-end"
    cipher: str | None = None
    key_size: int | None = None


class VolumeRef(BaseModel):
    """What a driver knows about a volume."""

    id: str
    size: int
    project_id: str
    host: str | None = None
    provider_location: str | None = None
    volume_type_id: str | None = None
    extra_specs: dict[str, str] = Field(default_factory=dict)
    encryption: EncryptionSpec | None = None
    encryption_key_id: str | None = None
    admin_metadata: dict[str, str] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        """Backend object name, Cinder's `volume_name_template`."""
        return f"volume-{self.id}"


class SnapshotRef(BaseModel):
    """What a driver knows about a snapshot; `host` is its volume's backend."""

    id: str
    volume_id: str
    volume_size: int
    host: str | None = None
    provider_location: str | None = None
    encryption_key_id: str | None = None

    @property
    def name(self) -> str:
        return f"snapshot-{self.id}"


class ExtendOutcome(StrEnum):
    """An explicit result instead of Cinder's exception-or-nothing."""

    DONE = "done"
    NEEDS_COMPUTE_COMPLETION = "needs_compute_completion"
    """A compute-side process holds the volume; it must resize and then call completion."""


class VolumeDriverError(Exception):
    """The backend failed or refused the operation. Not retried: the operation fails."""


class VolumeIsBusy(VolumeDriverError):
    """The volume is in use on the backend and cannot be deleted now."""


class BackendTemporarilyUnavailable(Exception):
    """A transient failure worth retrying (network blip, lock contention)."""


class VolumeDriver(abc.ABC):
    """Cinder's core driver interface. Optional features have default implementations."""

    VERSION = "1.0.0"
    vendor_name = "cinderflow"
    keys: Any = None
    """Set by the worker: the KeyService that gives encrypted volumes' passphrases."""

    def __init__(self, backend_name: str, options: dict[str, Any]) -> None:
        self.backend_name = backend_name
        self.options = options

    def do_setup(self) -> None:  # noqa: B027 (optional hook)
        """Prepare the backend once per worker start (create directories, log in, ...)."""

    def check_for_setup_error(self) -> None:  # noqa: B027 (optional hook)
        """Raise if the configuration cannot work at all; a worker will not serve it."""

    @abc.abstractmethod
    def get_volume_stats(self, refresh: bool = False) -> dict[str, Any]:
        """Capabilities and capacity: `REQUIRED_STATS` plus `backend_state` ("up"/"down"),
        `online_extend_support`, `reserved_percentage`, thin provisioning keys, ..."""

    @abc.abstractmethod
    def create_volume(self, volume: VolumeRef) -> dict[str, Any] | None:
        """Create an empty `volume.size` GiB volume; return a model update (provider_location)."""

    @abc.abstractmethod
    def delete_volume(self, volume: VolumeRef) -> None:
        """Delete the volume so no data can leak into later volumes; missing is success."""

    @abc.abstractmethod
    def create_snapshot(self, snapshot: SnapshotRef) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def delete_snapshot(self, snapshot: SnapshotRef) -> None: ...

    @abc.abstractmethod
    def create_volume_from_snapshot(
        self, volume: VolumeRef, snapshot: SnapshotRef
    ) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def create_cloned_volume(
        self, volume: VolumeRef, src_vref: VolumeRef
    ) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def initialize_connection(self, volume: VolumeRef, connector: dict[str, Any]) -> dict[str, Any]:
        """Export the volume to `connector`; return `{"driver_volume_type": ..., "data": {...}}`."""

    @abc.abstractmethod
    def terminate_connection(self, volume: VolumeRef, connector: dict[str, Any] | None) -> None:
        """Remove the export for `connector` (None: every connector)."""

    @abc.abstractmethod
    def extend_volume(self, volume: VolumeRef, new_size: int) -> ExtendOutcome: ...

    @abc.abstractmethod
    def copy_image_to_volume(self, volume: VolumeRef, image_path: str, image_format: str) -> None:
        """Write a local image file (already downloaded) into the volume."""

    @abc.abstractmethod
    def copy_volume_to_image(self, volume: VolumeRef, image_path: str, image_format: str) -> None:
        """Write the volume's content to a local image file (to be uploaded)."""

    # Optional features -------------------------------------------------------------------------

    def retype(
        self, volume: VolumeRef, new_type: dict[str, Any], diff: dict[str, Any], host: str
    ) -> tuple[bool, dict[str, Any] | None]:
        """Change the type in place; `(False, None)` means "cannot, migrate instead"."""
        return False, None

    def accept_transfer(
        self, volume: VolumeRef, new_user: str, new_project: str
    ) -> dict[str, Any] | None:
        return None

    def reset_state(self, volume: VolumeRef, status: str, attach_status: str | None) -> None:
        """Make the backend match a reset status; NotImplementedError if the driver cannot."""
        raise NotImplementedError
