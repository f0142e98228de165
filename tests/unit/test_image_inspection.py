"""The file driver never lets an image name another host file: backing files, external data
files and VMDK extents elsewhere are refused before anything is read (OSSA-2024-001); the
format is the image service's, never probed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cinderflow.drivers import qemu_img
from cinderflow.drivers.base import ImageFile, VolumeDriverError, VolumeRef
from cinderflow.drivers.file import FileDriver

SECRET_FILE_BYTES = b"another tenant's data\n" * 1000


def _driver(tmp_path: Path) -> FileDriver:
    driver = FileDriver("file", {"path": str(tmp_path / "volumes"), "luks_iter_time_ms": 10})
    driver.do_setup()
    return driver


def _volume() -> VolumeRef:
    return VolumeRef(id="11111111-2222-3333-4444-555555555555", size=1, project_id="p")


def _refused(tmp_path: Path, image: Path, disk_format: str, fragment: str) -> None:
    driver = _driver(tmp_path)
    with pytest.raises(VolumeDriverError, match=fragment):
        driver.copy_image_to_volume(_volume(), ImageFile(path=str(image), disk_format=disk_format))
    assert list((tmp_path / "volumes").iterdir()) == [], "nothing made"


def test_a_qcow2_with_a_backing_file_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.raw"
    victim.write_bytes(SECRET_FILE_BYTES)
    image = tmp_path / "evil.qcow2"
    qemu_img.run("create", "-q", "-f", "qcow2", "-b", str(victim), "-F", "raw", str(image))
    _refused(tmp_path, image, "qcow2", "backing_file")


def test_a_qcow2_with_an_external_data_file_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.raw"
    victim.write_bytes(SECRET_FILE_BYTES)
    image = tmp_path / "evil.qcow2"
    qemu_img.run(
        "create", "-q", "-f", "qcow2", "-o", f"data_file={victim},data_file_raw=on",
        str(image), "1M",
    )  # fmt: skip
    _refused(tmp_path, image, "qcow2", "data_file")


def test_a_vmdk_with_an_extent_elsewhere_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.raw"
    victim.write_bytes(SECRET_FILE_BYTES + b"\0" * (512 - len(SECRET_FILE_BYTES) % 512))
    sectors = victim.stat().st_size // 512
    image = tmp_path / "evil.vmdk"
    image.write_text(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
        'createType="monolithicFlat"\n\n'
        f'RW {sectors} FLAT "{victim}" 0\n\n'
        'ddb.virtualHWVersion = "4"\nddb.geometry.cylinders = "1"\n'
        'ddb.geometry.heads = "16"\nddb.geometry.sectors = "63"\nddb.adapterType = "ide"\n'
    )
    _refused(tmp_path, image, "vmdk", "not a safe vmdk image")


def test_a_raw_image_is_copied_as_raw_whatever_its_bytes_say(tmp_path: Path) -> None:
    """A raw image that holds a qcow2 header pointing at a host file is copied as bytes:
    nothing opens it as qcow2."""
    victim = tmp_path / "victim.raw"
    victim.write_bytes(SECRET_FILE_BYTES)
    header = tmp_path / "header.qcow2"
    qemu_img.run("create", "-q", "-f", "qcow2", "-b", str(victim), "-F", "raw", str(header))
    driver = _driver(tmp_path)
    driver.copy_image_to_volume(_volume(), ImageFile(path=str(header), disk_format="raw"))
    made = (tmp_path / "volumes" / f"volume-{_volume().id}").read_bytes()
    assert made.startswith(header.read_bytes()) and SECRET_FILE_BYTES not in made
    assert os.stat(tmp_path / "volumes" / f"volume-{_volume().id}").st_size == 1024**3


@pytest.mark.parametrize("subformat", ["monolithicSparse", "streamOptimized"])
def test_self_contained_vmdk_images_are_converted(tmp_path: Path, subformat: str) -> None:
    data = os.urandom(1 << 20)
    plain = tmp_path / "plain.raw"
    plain.write_bytes(data)
    image = tmp_path / "disk.vmdk"
    qemu_img.run(
        "convert", "-f", "raw", "-O", "vmdk", "-o", f"subformat={subformat}",
        str(plain), str(image),
    )  # fmt: skip
    driver = _driver(tmp_path)
    driver.copy_image_to_volume(_volume(), ImageFile(path=str(image), disk_format="vmdk"))
    made = tmp_path / "volumes" / f"volume-{_volume().id}"
    assert made.read_bytes()[: len(data)] == data
