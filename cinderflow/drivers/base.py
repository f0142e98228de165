"""The volume driver interface: a specification, after Cinder's `cinder/interface/volume_driver.py`.

A driver talks to one backend. cinderflow calls it only from activities on the backend's task
queue (`backend:<host>@<backend>`), in a worker thread, so blocking I/O is fine.

**Every method may run more than once for the same request, and may finish late.** An attempt
whose worker stopped heartbeating is retried, possibly elsewhere, while the first may still be
running; it cannot be interrupted. So each method must be idempotent and safe to complete late:
creating what already exists keeps its data (never truncate), deleting what is gone is success,
and half-made objects must never be published under their final name (make them under a
temporary name and link or rename them into place; a retry removes an earlier attempt's
temporaries).

**Failures are classified by what the driver raises:**

- `VolumeDriverError`: the backend failed or refused; final, the operation fails (the message
  reaches the user message and the workflow's history);
- `BackendTemporarilyUnavailable`: a transient failure (lock contention, a flaky tool, a network
  blip); the call is retried with back-off up to the operation's `driver_max_attempts`;
- `NotImplementedError`: the driver cannot do this (final);
- anything else is treated as a crash and retried.

**Long calls** (copies) use their call context (`cinderflow.drivers.call.current_call()`) to
report progress, to notice that the operation stopped waiting (`cancelled()`), and to resume
from what an earlier attempt reported (`resumed`).

Core methods are abstract; optional capabilities are the mixins at the end (`SupportsReset`,
`SupportsImageCopy`, `SupportsRetype`, `SupportsMigration`, `SupportsVolumeCopy`,
`SupportsTransfer`): a driver
inherits those it implements, and cinderflow checks `isinstance` before calling one.

Drivers receive `VolumeRef`/`SnapshotRef` values, never database rows. This module is imported
by workflow code, so it must stay free of I/O and heavy imports.
"""

from __future__ import annotations

import abc
from enum import StrEnum
from typing import Any, Protocol

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
    name_id: str | None = None
    """Set when the backend object is named after another id (a migrated volume's data is
    the destination's); Cinder's `name_id`."""

    @property
    def name(self) -> str:
        """Backend object name, Cinder's `volume_name_template` over `name_id`."""
        return f"volume-{self.name_id or self.id}"


class SnapshotRef(BaseModel):
    """What a driver knows about a snapshot; `host` is its volume's backend."""

    id: str
    volume_id: str
    volume_size: int
    host: str | None = None
    provider_location: str | None = None
    encryption_key_id: str | None = None
    volume_name_id: str | None = None
    """The volume's `name_id` (see VolumeRef)."""

    @property
    def name(self) -> str:
        return f"snapshot-{self.id}"

    @property
    def volume_name(self) -> str:
        """The backend object name of the snapshot's volume."""
        return f"volume-{self.volume_name_id or self.volume_id}"


ModelUpdate = dict[str, Any] | None
"""Fields to store on the volume or snapshot (`provider_location`, `provider_id`), or None."""


class ExtendOutcome(StrEnum):
    """An explicit result instead of Cinder's exception-or-nothing."""

    DONE = "done"
    NEEDS_COMPUTE_COMPLETION = "needs_compute_completion"
    """A compute-side process holds the volume; it must resize and then call completion."""


class VolumeDriverError(Exception):
    """The backend failed or refused the operation. Final: the operation fails."""


class BackendTemporarilyUnavailable(Exception):
    """A transient failure worth retrying (lock contention, a flaky tool, a network blip)."""


class Passphrases(Protocol):
    """Where a driver gets an encrypted volume's passphrase (cinderflow's key service)."""

    def passphrase(self, project_id: str, key_id: str) -> bytes: ...


class VolumeDriver(abc.ABC):
    """Cinder's core driver interface: what every backend must do."""

    VERSION = "1.0.0"
    vendor_name = "cinderflow"
    storage_protocol = "unknown"

    def __init__(
        self, backend_name: str, options: dict[str, Any], keys: Passphrases | None = None
    ) -> None:
        """:param backend_name: the backend's configured name (`volume_backend_name`).
        :param options: the backend's `options` from the settings.
        :param keys: the key service, for the passphrases of encrypted volumes.
        """
        self.backend_name = backend_name
        self.options = options
        self.keys = keys

    def do_setup(self) -> None:  # noqa: B027 (optional hook)
        """Prepare the backend once per worker start (create directories, log in, ...).

        :raises VolumeDriverError: the backend cannot be prepared; the worker does not start.
        """

    def check_for_setup_error(self) -> None:  # noqa: B027 (optional hook)
        """Check that the configuration can work at all.

        :raises VolumeDriverError: it cannot; the worker does not serve this backend.
        """

    @abc.abstractmethod
    def get_volume_stats(self, refresh: bool = False) -> dict[str, Any]:
        """Capabilities and capacity, reported as the backend's heartbeat.

        :param refresh: re-read the backend rather than answer from a cache.
        :returns: `REQUIRED_STATS` plus `backend_state` (`up`/`down`), `online_extend_support`,
            `reserved_percentage`, thin provisioning keys, `encryption_providers`, ...
        """

    @abc.abstractmethod
    def create_volume(self, volume: VolumeRef) -> ModelUpdate:
        """Create an empty volume of `volume.size` GiB.

        :param volume: the volume (its type's extra specs and encryption included).
        :returns: a model update (`provider_location`).
        :raises VolumeDriverError: the backend cannot create it.
        """

    @abc.abstractmethod
    def delete_volume(self, volume: VolumeRef) -> None:
        """Delete the volume so that no data can leak into later volumes, and everything the
        driver made for it (exports, temporaries).

        :param volume: the volume; it may already be gone (success).
        :raises VolumeDriverError: the backend cannot delete it now.
        """

    @abc.abstractmethod
    def create_snapshot(self, snapshot: SnapshotRef) -> ModelUpdate:
        """Make a point-in-time copy of the snapshot's volume.

        :param snapshot: the snapshot; `snapshot.volume_id` is the volume to copy.
        :returns: a model update (`provider_location`).
        :raises VolumeDriverError: the volume is missing or the backend cannot copy it.
        """

    @abc.abstractmethod
    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        """Delete the snapshot and its temporaries.

        :param snapshot: the snapshot; it may already be gone (success).
        :raises VolumeDriverError: the backend cannot delete it now.
        """

    @abc.abstractmethod
    def create_volume_from_snapshot(self, volume: VolumeRef, snapshot: SnapshotRef) -> ModelUpdate:
        """Create `volume` with the snapshot's content, grown to `volume.size` GiB.

        :param volume: the new volume (at least the snapshot's size).
        :param snapshot: the source; cinderflow holds it unchanged until this returns.
        :returns: a model update (`provider_location`).
        :raises VolumeDriverError: the snapshot is missing or the copy failed.
        """

    @abc.abstractmethod
    def create_cloned_volume(self, volume: VolumeRef, src_vref: VolumeRef) -> ModelUpdate:
        """Create `volume` as a copy of `src_vref`, grown to `volume.size` GiB.

        :param volume: the new volume (at least the source's size).
        :param src_vref: the source; cinderflow holds it unchanged until this returns.
        :returns: a model update (`provider_location`).
        :raises VolumeDriverError: the source is missing or the copy failed.
        """

    @abc.abstractmethod
    def initialize_connection(self, volume: VolumeRef, connector: dict[str, Any]) -> dict[str, Any]:
        """Export the volume to a consumer.

        :param volume: the volume to export.
        :param connector: os-brick's description of the consumer (host, initiator, ip, ...).
        :returns: `{"driver_volume_type": ..., "data": {...}}` for os-brick.
        :raises VolumeDriverError: the volume is missing or cannot be exported.
        """

    @abc.abstractmethod
    def terminate_connection(self, volume: VolumeRef, connector: dict[str, Any] | None) -> None:
        """End an export.

        :param volume: the volume.
        :param connector: the consumer whose export ends; None: every export of the volume.
        :raises VolumeDriverError: the backend cannot end it now.
        """

    @abc.abstractmethod
    def extend_volume(self, volume: VolumeRef, new_size: int) -> ExtendOutcome:
        """Grow the volume to `new_size` GiB.

        :param volume: the volume at its current size.
        :param new_size: the size to grow to (larger than `volume.size`).
        :returns: `DONE`, or `NEEDS_COMPUTE_COMPLETION` when a running guest holds the volume and
            only its compute can grow it (the compute then confirms).
        :raises VolumeDriverError: the backend cannot grow it.
        """


# Optional capabilities --------------------------------------------------------------------------


class SupportsReset(abc.ABC):
    """The backend can be made to match an administrator's reset-status."""

    @abc.abstractmethod
    def reset_state(self, volume: VolumeRef, status: str, attach_status: str | None) -> None:
        """Make the backend agree with a reset (end exports for `detached`, check that the
        volume exists for `available`/`in-use`).

        :raises VolumeDriverError: the backend cannot be in that state; the reset is refused
            unless the administrator forces it.
        """


class ImageFile(BaseModel):
    """An image's data in a local file: downloaded from the image service (to fill a volume),
    or to be uploaded to it. Its format is the image service's `disk_format`, never probed
    from its bytes."""

    path: str
    disk_format: str
    encrypted: bool = False
    """LUKS inside: a raw LUKS file, or a qcow2 with LUKS encryption."""
    key_id: str | None = None
    """The secret that opens an encrypted qcow2 (the volume's project holds it). A raw LUKS
    image needs none: the volume's key is a clone of the image's secret."""


class SupportsImageCopy(abc.ABC):
    """Volumes can be made from images and written to images."""

    @abc.abstractmethod
    def copy_image_to_volume(self, volume: VolumeRef, image: ImageFile) -> ModelUpdate:
        """Create the volume (it does not exist yet) with the image's content: converted from
        its format, encrypted under the volume's key where the volume is encrypted (a raw LUKS
        image is copied as it is: the volume's key is a clone of its secret). No partial
        volume is ever left: a failed or stopped call leaves nothing. Report progress
        (`current_call().progress`) and stop when `cancelled()`.

        :raises VolumeDriverError: the image cannot be read (a backing or data file, a size
            beyond the volume's, a wrong secret), or written.
        """

    @abc.abstractmethod
    def copy_volume_to_image(self, volume: VolumeRef, image: ImageFile) -> None:
        """Write the volume's content into `image.path` in `image.disk_format`; an encrypted
        volume as its LUKS ciphertext (a raw LUKS image, opened with a clone of its key).

        :raises VolumeDriverError: the volume cannot be read, or not in that format.
        """


class SupportsRetype(abc.ABC):
    """The backend can change some of a volume's type in place."""

    @abc.abstractmethod
    def retype(
        self, volume: VolumeRef, new_type: dict[str, Any], diff: dict[str, Any], host: str
    ) -> tuple[bool, ModelUpdate]:
        """Change the volume's type without moving its data.

        :returns: `(True, model update)`, or `(False, None)` for "cannot, migrate instead".
        :raises VolumeDriverError: the change failed.
        """


class SupportsMigration(abc.ABC):
    """The backend can move a volume to another backend by itself (no host-assisted copy)."""

    @abc.abstractmethod
    def migrate_volume(self, volume: VolumeRef, host: str) -> tuple[bool, ModelUpdate]:
        """Move the volume to `host`.

        :returns: `(True, model update)`, or `(False, None)` for "use the generic copy".
        :raises VolumeDriverError: the move failed.
        """


class SupportsVolumeCopy(abc.ABC):
    """The backend can fill one of its volumes from another backend's export: the data copy
    of a generic (host-assisted) migration, Cinder's `_copy_volume_data`, run on the
    destination's queue."""

    @abc.abstractmethod
    def copy_volume_data(
        self, target: VolumeRef, source: VolumeRef, source_connection: dict[str, Any]
    ) -> None:
        """Copy every guest-visible byte of `source` into `target` (created empty by this
        driver, same size), decrypting with the source's key and encrypting with the
        target's where they are encrypted. Report progress (`current_call().progress`) and
        stop when `cancelled()`; a retry starts the copy again.

        :param source_connection: `initialize_connection` of the source on its backend.
        :raises VolumeDriverError: the export cannot be read here, or the copy failed.
        """


class SupportsTransfer(abc.ABC):
    """The backend must know when a volume changes project."""

    @abc.abstractmethod
    def accept_transfer(self, volume: VolumeRef, new_user: str, new_project: str) -> ModelUpdate:
        """Hand the volume to another project.

        :raises VolumeDriverError: the backend refused.
        """
