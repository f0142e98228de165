"""The file driver on real files, with real qemu-img and os-brick's LocalConnector."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from os_brick.initiator import connector as brick

from cinderflow.drivers import qemu_img
from cinderflow.drivers.base import (
    REQUIRED_STATS,
    EncryptionSpec,
    ExtendOutcome,
    SnapshotRef,
    VolumeDriverError,
    VolumeRef,
)
from cinderflow.drivers.file import GIB, FileDriver
from cinderflow.drivers.registry import load_driver
from cinderflow.settings import BackendConfig


@pytest.fixture
def driver(tmp_path: Path) -> FileDriver:
    built = load_driver(BackendConfig(name="files", options={"path": str(tmp_path / "vols")}))
    assert isinstance(built, FileDriver)
    built.do_setup()
    built.check_for_setup_error()
    return built


def volume(size: int = 1, ident: str = "v-1") -> VolumeRef:
    return VolumeRef(id=ident, size=size, project_id="p")


def test_create_makes_a_sparse_raw_file_of_the_size(driver: FileDriver) -> None:
    update = driver.create_volume(volume(2))
    path = driver.path(volume(2))
    assert update == {"provider_location": str(path)}
    assert path.stat().st_size == 2 * GIB
    assert path.stat().st_blocks == 0  # sparse: no data written
    assert qemu_img.info(path)["virtual-size"] == 2 * GIB


def test_create_is_idempotent_and_never_truncates(driver: FileDriver) -> None:
    driver.create_volume(volume())
    path = driver.path(volume())
    with open(path, "r+b") as handle:
        handle.write(b"data")
    driver.create_volume(volume())  # an overlapping retry
    assert path.read_bytes()[:4] == b"data"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_delete_is_idempotent(driver: FileDriver) -> None:
    driver.create_volume(volume())
    driver.delete_volume(volume())
    driver.delete_volume(volume())
    assert not driver.path(volume()).exists()


def test_stats_have_every_required_key_and_count_volumes(driver: FileDriver) -> None:
    driver.create_volume(volume(3, "a"))
    driver.create_volume(volume(1, "b"))
    stats = driver.get_volume_stats(refresh=True)
    assert set(REQUIRED_STATS) <= set(stats)
    assert stats["backend_state"] == "up"
    assert stats["online_extend_support"] is True
    assert stats["volume_backend_name"] == "files"
    assert stats["total_volumes"] == 2
    assert stats["provisioned_capacity_gb"] == 4.0
    st = os.statvfs(driver.root)
    assert stats["total_capacity_gb"] == round(st.f_blocks * st.f_frsize / GIB, 2)
    assert 0 < stats["free_capacity_gb"] <= stats["total_capacity_gb"]


def test_backend_is_down_while_its_directory_is_gone(driver: FileDriver) -> None:
    moved = driver.root.with_name("elsewhere")
    driver.root.rename(moved)
    stats = driver.get_volume_stats()
    assert stats["backend_state"] == "down"
    assert stats["free_capacity_gb"] == "unknown"
    with pytest.raises(VolumeDriverError, match="missing or not writable"):
        driver.create_volume(volume())
    moved.rename(driver.root)
    assert driver.get_volume_stats()["backend_state"] == "up"


def test_extend_resizes_the_file(driver: FileDriver) -> None:
    driver.create_volume(volume())
    assert driver.extend_volume(volume(), 3) is ExtendOutcome.DONE
    assert driver.path(volume()).stat().st_size == 3 * GIB


def test_connection_works_with_os_brick_local_connector(driver: FileDriver) -> None:
    driver.create_volume(volume())
    info = driver.initialize_connection(volume(), {"host": "here"})
    assert info["driver_volume_type"] == "local"
    local = brick.InitiatorConnector.factory("LOCAL", None)
    device = local.connect_volume(info["data"])
    with open(device["path"], "r+b") as handle:
        handle.seek(GIB // 2)
        handle.write(b"through os-brick")
    with open(driver.path(volume()), "rb") as handle:
        handle.seek(GIB // 2)
        assert handle.read(16) == b"through os-brick"
    local.disconnect_volume(info["data"], device)
    driver.terminate_connection(volume(), None)


def write_at(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def read_at(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def test_snapshot_then_volume_from_it_then_clone(driver: FileDriver) -> None:
    source = volume(1, "src")
    driver.create_volume(source)
    write_at(driver.path(source), 4096, b"snapshotted")
    snap = SnapshotRef(id="s1", volume_id="src", volume_size=1)
    assert driver.create_snapshot(snap) == {"provider_location": str(driver.snapshot_path(snap))}
    write_at(driver.path(source), 4096, b"changed!!!!")

    restored = volume(2, "from-snap")
    driver.create_volume_from_snapshot(restored, snap)
    assert read_at(driver.path(restored), 4096, 11) == b"snapshotted"
    assert driver.path(restored).stat().st_size == 2 * GIB  # grown to the requested size

    clone = volume(1, "clone")
    driver.create_cloned_volume(clone, source)
    assert read_at(driver.path(clone), 4096, 11) == b"changed!!!!"
    assert driver.path(clone).stat().st_blocks < 1024  # sparse: only written blocks take space

    driver.delete_snapshot(snap)
    driver.delete_snapshot(snap)
    assert not driver.snapshot_path(snap).exists()
    assert not list(driver.root.glob(".*partial"))


def test_copies_never_overwrite_a_published_target(driver: FileDriver) -> None:
    """A late attempt of a clone must not overwrite the volume the first attempt produced."""
    source, clone = volume(1, "a"), volume(1, "b")
    driver.create_volume(source)
    driver.create_cloned_volume(clone, source)
    write_at(driver.path(clone), 0, b"written after the clone finished")
    driver.create_cloned_volume(clone, source)
    assert read_at(driver.path(clone), 0, 7) == b"written"


def test_copy_sources_must_exist(driver: FileDriver) -> None:
    with pytest.raises(VolumeDriverError, match="does not exist"):
        driver.create_snapshot(SnapshotRef(id="s", volume_id="missing", volume_size=1))
    with pytest.raises(VolumeDriverError, match="does not exist"):
        driver.create_volume_from_snapshot(
            volume(ident="x"), SnapshotRef(id="nope", volume_id="v", volume_size=1)
        )


def test_driver_needs_a_path_and_a_known_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs option 'path'"):
        load_driver(BackendConfig(name="x"))
    with pytest.raises(ValueError, match="unknown driver"):
        load_driver(BackendConfig(name="x", driver="nope"))
    with pytest.raises(ValueError, match="is not a VolumeDriver"):
        load_driver(BackendConfig(name="x", driver="pathlib:Path"))


def test_concurrent_probes_never_report_a_healthy_backend_down(driver: FileDriver) -> None:
    """Stats and driver calls probe writability at the same time; none may see a false down."""
    with ThreadPoolExecutor(16) as pool:
        states = list(pool.map(lambda _: driver.get_volume_stats()["backend_state"], range(400)))
    assert set(states) == {"up"}
    assert not list(driver.root.glob(".probe-*"))


@pytest.fixture
def keyed(driver: FileDriver, databases, tmp_path: Path) -> FileDriver:
    """The driver with a real key service (the local key manager on a SQLite database)."""
    from cinderflow.db.engine import Database
    from cinderflow.keys.local import LocalKeyManager
    from cinderflow.keys.service import KeyService

    driver.keys = KeyService(
        LocalKeyManager(Database(databases.new("sqlite")), tmp_path / "master.key")
    )
    driver.luks_iter_time_ms = 10
    return driver


def encrypted(
    driver: FileDriver, ident: str, size: int = 1, key_id: str | None = None, provider: str = "luks"
) -> VolumeRef:
    spec = EncryptionSpec(provider=provider, cipher="aes-xts-plain64", key_size=256)
    key = key_id or driver.keys.create("p", spec)
    return VolumeRef(id=ident, size=size, project_id="p", encryption=spec, encryption_key_id=key)


def test_encrypted_volumes_are_luks_files(keyed: FileDriver) -> None:
    vol = encrypted(keyed, "enc")
    keyed.create_volume(vol)
    keyed.create_volume(vol)  # a retry keeps the first file
    info = qemu_img.info(keyed.path(vol), "luks")
    assert info["virtual-size"] == GIB
    assert info["format-specific"]["data"]["cipher-alg"] == "aes-128"  # XTS halves 256 bits
    secret = keyed.keys.passphrase("p", vol.encryption_key_id)
    assert len(qemu_img.read_luks(keyed.path(vol), 0, 512, secret)) == 512
    with pytest.raises(qemu_img.QemuImgError, match="Invalid password"):
        qemu_img.read_luks(keyed.path(vol), 0, 512, b"not the key")


def test_encrypted_copies_keep_the_key_material_and_grow(keyed: FileDriver) -> None:
    source = encrypted(keyed, "src")
    keyed.create_volume(source)
    clone_key = keyed.keys.clone("p", source.encryption_key_id)
    clone = encrypted(keyed, "clone", size=2, key_id=clone_key)
    keyed.create_cloned_volume(clone, source)
    assert qemu_img.info(keyed.path(clone), "luks")["virtual-size"] == 2 * GIB
    secret = keyed.keys.passphrase("p", clone_key)
    assert qemu_img.read_luks(keyed.path(clone), 0, 64, secret) == qemu_img.read_luks(
        keyed.path(source), 0, 64, keyed.keys.passphrase("p", source.encryption_key_id)
    )


@pytest.mark.parametrize("provider", ["luks2", "plain"])
def test_other_providers_are_refused(keyed: FileDriver, provider: str) -> None:
    with pytest.raises(
        VolumeDriverError, match=f"supports encryption provider luks .*not {provider}"
    ):
        keyed.create_volume(encrypted(keyed, "x", provider=provider))
    assert not keyed.path(VolumeRef(id="x", size=1, project_id="p")).exists()


def test_a_flaky_qemu_img_is_retried_not_final(tmp_path: Path, monkeypatch) -> None:
    """qemu 7.2's PBKDF timing failure under load: retried a few times in place, then raised
    as a transient failure, which the activity lets Temporal retry (not an `error` volume)."""
    from cinderflow.activities.driver import as_activity_error

    fake = tmp_path / "bin" / "qemu-img"
    fake.parent.mkdir()
    calls = tmp_path / "calls"
    fake.write_text(
        "#!/bin/sh\n"
        f"echo x >> {calls}\n"
        f"echo 'qemu-img: {qemu_img.PBKDF_FLAKE}: Invalid argument' >&2\n"
        "exit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    with pytest.raises(qemu_img.QemuImgFlaky) as flaky:
        qemu_img.create_luks(tmp_path / "x.luks", 1, b"secret", "key-secret=sec0")
    assert len(calls.read_text().split()) == qemu_img.PBKDF_ATTEMPTS
    assert b"secret" not in str(flaky.value).encode()
    assert as_activity_error(flaky.value).non_retryable is False
    assert as_activity_error(VolumeDriverError("refused")).non_retryable is True


def guest_bytes(driver: FileDriver, vol: VolumeRef, offset: int, length: int) -> bytes:
    """What a guest reads at `offset` (decrypted if the volume is encrypted)."""
    if vol.encryption is None:
        with open(driver.path(vol), "rb") as handle:
            handle.seek(offset)
            return handle.read(length)
    secret = driver.keys.passphrase("p", vol.encryption_key_id)  # type: ignore[union-attr]
    return qemu_img.read_luks(driver.path(vol), offset, length, secret)


def guest_write(driver: FileDriver, vol: VolumeRef, offset: int, data: bytes) -> None:
    """Write as a guest would (through LUKS if encrypted)."""
    if vol.encryption is None:
        with open(driver.path(vol), "r+b") as handle:
            handle.seek(offset)
            handle.write(data)
        return
    plain = driver.root / "plain.raw"
    plain.write_bytes(b"\0" * offset + data)
    qemu_img.convert_into(
        plain,
        driver.path(vol),
        target_secret=driver.keys.passphrase("p", vol.encryption_key_id),  # type: ignore[union-attr]
    )
    plain.unlink()


@pytest.mark.parametrize(
    ("source_encrypted", "target_encrypted"),
    [(False, False), (False, True), (True, False), (True, True)],
    ids=["plain-plain", "plain-luks", "luks-plain", "luks-new-key"],
)
def test_copy_volume_data_keeps_the_guest_bytes_across_encryption_changes(
    keyed: FileDriver, source_encrypted: bool, target_encrypted: bool
) -> None:
    """A migration's copy: the target reads back what the source held, whatever each side's
    encryption (a LUKS target gets its own key), and the source is left as it was. (Sectors
    a guest never wrote read as noise through LUKS, so only a plain copy stays sparse.)"""
    source = encrypted(keyed, "src") if source_encrypted else volume(1, "src")
    target = encrypted(keyed, "dst") if target_encrypted else volume(1, "dst")
    keyed.create_volume(source)
    keyed.create_volume(target)
    guest_write(keyed, source, 3 << 20, b"written by the guest before the migration")
    connection = keyed.initialize_connection(source, {"host": "migration"})
    keyed.copy_volume_data(target, source, connection)
    expected = b"written by the guest before the migration"
    assert guest_bytes(keyed, target, 3 << 20, len(expected)) == expected
    assert guest_bytes(keyed, target, 0, 4096) == b"\0" * 4096
    assert guest_bytes(keyed, source, 3 << 20, len(expected)) == expected
    if not (source_encrypted or target_encrypted):  # zeros are not written: still sparse
        assert os.stat(keyed.path(target)).st_blocks * 512 < 16 << 20


def test_copy_volume_data_refuses_what_it_cannot_read(driver: FileDriver) -> None:
    target = volume(1, "dst")
    driver.create_volume(target)
    with pytest.raises(VolumeDriverError, match="copies from local files, not from iscsi"):
        driver.copy_volume_data(target, volume(1, "src"), {"driver_volume_type": "iscsi"})
    with pytest.raises(VolumeDriverError, match="cannot be read here"):
        driver.copy_volume_data(
            target, volume(1, "src"), {"driver_volume_type": "local", "data": {"device_path": "/x"}}
        )
