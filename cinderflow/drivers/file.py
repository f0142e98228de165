"""The reference driver: each volume is a sparse raw file `volume-<id>` in one directory.

Attach is local: the connection info names the file, which os-brick's LocalConnector hands to
the consumer as-is. The backend is `down` while its directory is missing or not writable (a
probe write, since root ignores permission bits).

Encrypted volumes (provider `luks`) are LUKS1 files made by qemu-img, opened with the volume
key's passphrase (QEMU-native encryption, as libvirt does for file volumes; there is no
device-mapper here). `luks2` and `plain` need dm-crypt and are refused.

Options: `path` (required), `reserved_percentage` (0), `max_over_subscription_ratio` (20.0),
`online_extend_support` (true), `luks_iter_time_ms` (QEMU's default; tests use 10).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from castellan.common.exception import Forbidden as KeyForbidden
from castellan.common.exception import ManagedObjectNotFoundError as KeyNotFound

from cinderflow.drivers import qemu_img, qemu_locks
from cinderflow.drivers.base import (
    BackendTemporarilyUnavailable,
    ExtendOutcome,
    ImageFile,
    ModelUpdate,
    Passphrases,
    SnapshotRef,
    SupportsImageCopy,
    SupportsReset,
    SupportsRetype,
    SupportsTransfer,
    SupportsVolumeCopy,
    VolumeDriver,
    VolumeDriverError,
    VolumeRef,
)
from cinderflow.drivers.call import current_call
from cinderflow.files import private_directory, tighten_file

GIB = 1024**3

log = logging.getLogger(__name__)


class FileDriver(
    VolumeDriver,
    SupportsReset,
    SupportsRetype,
    SupportsVolumeCopy,
    SupportsTransfer,
    SupportsImageCopy,
):
    storage_protocol = "local"

    def __init__(
        self, backend_name: str, options: dict[str, Any], keys: Passphrases | None = None
    ) -> None:
        super().__init__(backend_name, options, keys)
        if "path" not in options:
            raise ValueError(f"backend {backend_name}: the file driver needs option 'path'")
        self.root = Path(options["path"])
        self.reserved_percentage = int(options.get("reserved_percentage", 0))
        self.max_over_subscription_ratio = float(options.get("max_over_subscription_ratio", 20.0))
        self.online_extend_support = bool(options.get("online_extend_support", True))
        self.luks_iter_time_ms = options.get("luks_iter_time_ms")

    def do_setup(self) -> None:
        private_directory(self.root)

    def check_for_setup_error(self) -> None:
        """Create and delete need nothing else; warn early that qemu-img-based calls will fail."""
        try:
            qemu_img.binary()
        except VolumeDriverError as missing:
            log.warning(
                "backend %s: %s; encrypted volumes and copies will fail until it is installed",
                self.backend_name,
                missing,
            )

    def path(self, volume: VolumeRef) -> Path:
        return self.root / volume.name

    # Stats ---------------------------------------------------------------------------------

    def get_volume_stats(self, refresh: bool = False) -> dict[str, Any]:
        up = self._writable()
        total_gb: float | str = "unknown"
        free_gb: float | str = "unknown"
        provisioned_gb = 0.0
        volumes = 0
        if up:
            st = os.statvfs(self.root)
            total_gb = round(st.f_blocks * st.f_frsize / GIB, 2)
            free_gb = round(st.f_bavail * st.f_frsize / GIB, 2)
            for entry in self.root.glob("volume-*"):
                with contextlib.suppress(FileNotFoundError):
                    provisioned_gb += entry.stat().st_size / GIB
                    volumes += 1
        return {
            "volume_backend_name": self.backend_name,
            "vendor_name": self.vendor_name,
            "driver_version": self.VERSION,
            "storage_protocol": self.storage_protocol,
            "total_capacity_gb": total_gb,
            "free_capacity_gb": free_gb,
            "provisioned_capacity_gb": round(provisioned_gb, 2),
            "total_volumes": volumes,
            "reserved_percentage": self.reserved_percentage,
            "max_over_subscription_ratio": self.max_over_subscription_ratio,
            "thin_provisioning_support": True,
            "thick_provisioning_support": False,
            "multiattach": True,
            "replication_enabled": False,
            "online_extend_support": self.online_extend_support,
            "encryption_providers": ["luks"],
            "sparse_copy_volume": True,
            "QoS_support": False,
            "location_info": f"file:{self.root}",
            "backend_state": "up" if up else "down",
        }

    def _writable(self) -> bool:
        """Create and remove a uniquely named file: concurrent probes (stats, driver calls)
        must not remove each other's."""
        try:
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
                pass
        except OSError:
            return False
        return True

    def _require_up(self) -> None:
        if not self._writable():
            raise VolumeDriverError(f"backend directory {self.root} is missing or not writable")

    # Volumes -------------------------------------------------------------------------------

    def create_volume(self, volume: VolumeRef) -> ModelUpdate:
        """Exclusive create, then grow to size: retries never truncate a file that exists.

        This is what `qemu-img create -f raw` does (a sparse truncate), minus its O_TRUNC, which
        would wipe a volume if a stale overlapping attempt ran late. Encrypted volumes are
        created privately and linked into place, for the same reason.
        """
        self._require_up()
        path = self.path(volume)
        if volume.encryption is not None:
            secret, options = self._luks(volume)
            self._publish(
                path, lambda partial: qemu_img.create_luks(partial, volume.size, secret, options)
            )
            return {"provider_location": str(path)}
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        qemu_locks.grow_file(path, volume.size * GIB)  # never shrinks one grown since
        return {"provider_location": str(path)}

    def _luks(self, volume: VolumeRef) -> tuple[bytes, str]:
        """The passphrase and qemu options of an encrypted volume; only `luks` is possible."""
        spec = volume.encryption
        assert spec is not None
        if spec.provider != "luks":
            raise VolumeDriverError(
                f"the file backend supports encryption provider luks (LUKS1 through qemu-img), "
                f"not {spec.provider}"
            )
        if volume.encryption_key_id is None or self.keys is None:
            raise VolumeDriverError(f"volume {volume.id} is encrypted but has no key")
        secret = self.keys.passphrase(volume.project_id, volume.encryption_key_id)
        return secret, qemu_img.luks_options(spec.cipher, spec.key_size, self.luks_iter_time_ms)

    def delete_volume(self, volume: VolumeRef) -> None:
        if not self.root.is_dir():
            raise VolumeDriverError(f"backend directory {self.root} is missing")
        self.path(volume).unlink(missing_ok=True)
        self._remove_partial_copies(self.path(volume))
        self.terminate_connection(volume, None)

    def extend_volume(self, volume: VolumeRef, new_size: int) -> ExtendOutcome:
        """Grow the file (through the LUKS layer if encrypted). While a QEMU process holds
        the file (an attached, running guest), only that process can resize it: the compute
        must do it (QMP block_resize) and then confirm with os-extend_volume_completion.

        A plain file grows in-process under QEMU's image locks (qemu_locks), an encrypted
        one through `qemu-img resize`, which sees the same locks."""
        path = self._existing(volume)
        if volume.encryption is None:
            try:
                qemu_locks.grow_raw(path, new_size * GIB)
            except qemu_locks.ImageInUse:
                if path.stat().st_size >= new_size * GIB:
                    return ExtendOutcome.DONE  # an earlier, overlapping attempt already grew it
                return ExtendOutcome.NEEDS_COMPUTE_COMPLETION
            return ExtendOutcome.DONE
        try:
            qemu_img.resize_luks(path, new_size, self._luks(volume)[0])
        except qemu_img.QemuImgError as error:
            if qemu_img.LOCKED not in str(error):
                raise
            return ExtendOutcome.NEEDS_COMPUTE_COMPLETION
        return ExtendOutcome.DONE

    # Retype --------------------------------------------------------------------------------

    def retype(
        self, volume: VolumeRef, new_type: dict[str, Any], diff: dict[str, Any], host: str
    ) -> tuple[bool, ModelUpdate]:
        """In place on this backend unless the encryption changes: a file keeps nothing of its
        type but its bytes, so extra specs and QoS need no change here; a new encryption
        needs the data copied (re-encrypted) into a new file."""
        self._existing(volume)
        if diff.get("encryption"):
            return False, None
        return True, None

    def copy_volume_data(
        self, target: VolumeRef, source: VolumeRef, source_connection: dict[str, Any]
    ) -> None:
        """`qemu-img convert -n` from the source's export (a local file: this driver's
        connection) into the target this backend created, decrypting and encrypting through
        LUKS where either side is encrypted; bytes copied go to the call's progress. A second
        copy into the same target (a retry while a killed attempt's qemu-img still runs)
        finds it locked and is retried once that has ended."""
        if source_connection.get("driver_volume_type") != "local":
            raise VolumeDriverError(
                f"the file backend copies from local files, not from "
                f"{source_connection.get('driver_volume_type')} exports"
            )
        origin = Path(source_connection.get("data", {}).get("device_path", ""))
        if not origin.is_file():
            raise VolumeDriverError(f"the source's file {origin} cannot be read here")
        destination = self._existing(target)
        call = current_call()
        total = source.size * GIB
        try:
            qemu_img.convert_into(
                origin,
                destination,
                source_secret=self._passphrase(source),
                target_secret=self._passphrase(target),
                progress=lambda percent: call.progress(int(total * percent / 100), total),
                stop=call.cancelled,
            )
        except qemu_img.QemuImgError as error:
            if qemu_img.LOCKED in str(error):
                raise BackendTemporarilyUnavailable(str(error)) from error
            raise
        call.progress(total, total)

    def _passphrase(self, volume: VolumeRef) -> bytes | None:
        """An encrypted volume's passphrase (its encryption checked), None for a plain one."""
        return self._luks(volume)[0] if volume.encryption is not None else None

    def accept_transfer(self, volume: VolumeRef, new_user: str, new_project: str) -> ModelUpdate:
        """A file belongs to no project: only check that the volume is there to hand over."""
        self._existing(volume)
        return None

    # Images --------------------------------------------------------------------------------

    def copy_image_to_volume(self, volume: VolumeRef, image: ImageFile) -> ModelUpdate:
        """Make the volume file from the image, privately, then publish it (never a partial
        volume). The image is opened in the format the image service names, checked first
        (no backing or data file, no larger than the volume):

        - plain image, plain volume: a sparse convert to raw, grown to the volume's size;
        - raw LUKS image, encrypted volume: its ciphertext as it is (the volume's key is a
          clone of the image's secret), checked to open with that key, grown if smaller;
        - qcow2+LUKS or plain image, encrypted volume: converted into a new LUKS file under
          the volume's own key (the image's secret opens the qcow2)."""
        self._require_up()
        source = Path(image.path)
        fmt = qemu_img.IMAGE_FORMATS.get(image.disk_format)
        if fmt is None and not (image.encrypted and image.disk_format == "luks"):
            raise VolumeDriverError(f"disk format {image.disk_format} is not supported")
        if image.encrypted and volume.encryption is None:
            raise VolumeDriverError("an encrypted image needs a volume of an encrypted type")
        size = volume.size * GIB
        raw_luks = image.encrypted and image.disk_format in ("raw", "luks")
        facts = qemu_img.inspect_image(source, "luks" if raw_luks else fmt or "raw")
        if fmt == "qcow2" and bool(facts.get("encrypted")) != image.encrypted:
            said = "encrypted" if image.encrypted else "not encrypted"
            raise VolumeDriverError(f"the image's qcow2 data contradicts its properties ({said})")
        if facts["virtual-size"] > size:
            raise VolumeDriverError(
                f"the image's virtual size ({facts['virtual-size']} bytes) does not fit in a "
                f"{volume.size} GiB volume"
            )
        call = current_call()

        def report(percent: float) -> None:
            call.progress(int(size * percent / 100), size)

        target = self.path(volume)
        if volume.encryption is None:

            def plain(partial: Path) -> None:
                qemu_img.copy(
                    source, partial, source_format=fmt, progress=report, stop=call.cancelled
                )
                qemu_locks.grow_file(partial, size)

            self._publish(target, plain)
            return {"provider_location": str(target)}
        secret, options = self._luks(volume)
        if raw_luks:

            def ciphertext(partial: Path) -> None:
                qemu_img.copy(source, partial, progress=report, stop=call.cancelled)
                qemu_img.read_luks(partial, 0, 512, secret)  # the key opens it, or this fails
                if facts["virtual-size"] < size:
                    qemu_img.resize_luks(partial, volume.size, secret)

            self._publish(target, ciphertext)
            return {"provider_location": str(target)}
        image_secret = None
        if image.encrypted:
            if image.key_id is None or self.keys is None:
                raise VolumeDriverError("the encrypted image names no secret")
            try:
                image_secret = self.keys.passphrase(volume.project_id, image.key_id)
            except (KeyNotFound, KeyForbidden) as refused:  # no retry helps
                raise VolumeDriverError(
                    f"the image's secret {image.key_id} cannot be read: {type(refused).__name__}"
                ) from None

        def encrypted(partial: Path) -> None:
            qemu_img.create_luks(partial, volume.size, secret, options)
            qemu_img.convert_into(
                source,
                partial,
                source_secret=image_secret,
                target_secret=secret,
                source_format=fmt or "raw",
                progress=report,
                stop=call.cancelled,
            )

        self._publish(target, encrypted)
        return {"provider_location": str(target)}

    def copy_volume_to_image(self, volume: VolumeRef, image: ImageFile) -> None:
        """The volume file into `image.path`: converted to the image's format if plain, its
        ciphertext as a raw LUKS image if encrypted. Read shared (`-U`): an in-use volume
        (a forced upload) is read as it is, crash-consistent at best, as in Cinder."""
        source = self._existing(volume)
        fmt = qemu_img.IMAGE_FORMATS.get(image.disk_format)
        if volume.encryption is not None and image.disk_format != "raw":
            raise VolumeDriverError("an encrypted volume is uploaded as a raw LUKS image only")
        if fmt is None:
            raise VolumeDriverError(f"disk format {image.disk_format} is not supported")
        call = current_call()
        total = source.stat().st_size
        qemu_img.copy(
            source,
            Path(image.path),
            fmt,
            source_format="raw",
            shared=True,
            progress=lambda percent: call.progress(int(total * percent / 100), total),
            stop=call.cancelled,
        )

    # Attach --------------------------------------------------------------------------------

    def initialize_connection(self, volume: VolumeRef, connector: dict[str, Any]) -> dict[str, Any]:
        """Export the file to the connector: the export is a record under `.exports/` (what a
        real backend's target/ACL would be), removed by terminate_connection."""
        path = self._existing(volume)
        export = self._exports(volume) / _connector_key(connector)
        private_directory(export.parent)
        export.write_text(json.dumps(connector, sort_keys=True))
        return {"driver_volume_type": "local", "data": {"device_path": str(path)}}

    def terminate_connection(self, volume: VolumeRef, connector: dict[str, Any] | None) -> None:
        """Remove the connector's export (None: every export of the volume)."""
        if connector is None:
            shutil.rmtree(self._exports(volume), ignore_errors=True)
        else:
            (self._exports(volume) / _connector_key(connector)).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # gone, or another consumer's export is left
                self._exports(volume).rmdir()

    def exports(self, volume: VolumeRef) -> list[dict[str, Any]]:
        """The connectors the volume is exported to."""
        folder = self._exports(volume)
        return (
            [json.loads(p.read_text()) for p in sorted(folder.iterdir())] if folder.is_dir() else []
        )

    def _exports(self, volume: VolumeRef) -> Path:
        return self.root / ".exports" / volume.name

    def reset_state(self, volume: VolumeRef, status: str, attach_status: str | None) -> None:
        """A reset to `available`/`in-use` must find the file; `detached` ends every export."""
        if attach_status == "detached":
            self.terminate_connection(volume, None)
        if status in ("available", "in-use") and not self.path(volume).is_file():
            raise VolumeDriverError(
                f"volume file {self.path(volume)} does not exist, so the volume cannot be "
                f"{status}; reset it to error instead"
            )

    def _existing(self, volume: VolumeRef) -> Path:
        path = self.path(volume)
        if not path.is_file():
            raise VolumeDriverError(f"volume file {path} does not exist")
        return path

    # Snapshots and copies ---------------------------------------------------------------

    def snapshot_path(self, snapshot: SnapshotRef) -> Path:
        return self.root / snapshot.name

    def create_snapshot(self, snapshot: SnapshotRef) -> ModelUpdate:
        """A full copy of the volume file (crash-consistent if the volume is in use)."""
        self._require_up()
        source = self.root / snapshot.volume_name
        if not source.is_file():
            raise VolumeDriverError(f"volume file {source} does not exist")
        target = self.snapshot_path(snapshot)
        self._publish(target, lambda partial: self._copy(source, partial))
        return {"provider_location": str(target)}

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        if not self.root.is_dir():
            raise VolumeDriverError(f"backend directory {self.root} is missing")
        self.snapshot_path(snapshot).unlink(missing_ok=True)
        self._remove_partial_copies(self.snapshot_path(snapshot))

    def create_volume_from_snapshot(self, volume: VolumeRef, snapshot: SnapshotRef) -> ModelUpdate:
        source = self.snapshot_path(snapshot)
        if not source.is_file():
            raise VolumeDriverError(f"snapshot file {source} does not exist")
        return self._volume_from_copy(volume, source)

    def create_cloned_volume(self, volume: VolumeRef, src_vref: VolumeRef) -> ModelUpdate:
        return self._volume_from_copy(volume, self._existing(src_vref))

    def _volume_from_copy(self, volume: VolumeRef, source: Path) -> dict[str, Any]:
        """Copy (ciphertext as is: the new volume's key is a clone of the source's), then grow
        to the requested size, never shrink."""
        self._require_up()
        target = self.path(volume)
        self._publish(target, lambda partial: self._copy(source, partial))
        if volume.encryption is not None:
            if qemu_img.info(target, "luks")["virtual-size"] < volume.size * GIB:
                qemu_img.resize_luks(target, volume.size, self._luks(volume)[0])
        else:
            qemu_locks.grow_file(target, volume.size * GIB)
        return {"provider_location": str(target)}

    def _publish(self, target: Path, make: Any) -> None:
        """Make the file privately (`make(partial_path)`), then link it into place exclusively:
        an overlapping or late attempt can never overwrite a file that is already published.

        The private file is named after the call's attempt, and each attempt first removes
        what other attempts left (a worker killed mid-copy leaves its partial file). Two
        attempts alive at once can at worst remove each other's partial file, which fails
        that attempt (it is retried): neither ever publishes a file another is still writing."""
        self._remove_partial_copies(target)
        if target.exists():
            return
        partial = target.with_name(f".{target.name}.{current_call().attempt}.partial")
        try:
            make(partial)
            tighten_file(partial)  # qemu-img's own mode, if a umask let it through
            with contextlib.suppress(FileExistsError):
                os.link(partial, target)
        finally:
            partial.unlink(missing_ok=True)

    def _remove_partial_copies(self, target: Path) -> None:
        for leftover in self.root.glob(f".{target.name}.*.partial"):
            leftover.unlink(missing_ok=True)

    def _copy(self, source: Path, target: Path) -> None:
        """qemu-img's sparse copy, reporting bytes copied to the call, stopped when the call
        is cancelled."""
        call = current_call()
        total = source.stat().st_size
        qemu_img.copy(
            source,
            target,
            progress=lambda percent: call.progress(int(total * percent / 100), total),
            stop=call.cancelled,
        )


def _connector_key(connector: dict[str, Any]) -> str:
    """One export per consumer host/initiator, as a backend's ACL entry would be."""
    who = {k: connector.get(k) for k in ("host", "initiator", "ip")}
    return hashlib.sha256(json.dumps(who, sort_keys=True).encode()).hexdigest()[:16]
