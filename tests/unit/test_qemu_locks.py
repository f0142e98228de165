"""Growing raw files in-process speaks QEMU's image locking as qemu-img does: checked against a
real QEMU guest holding the file and against real `qemu-img resize`."""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading
from pathlib import Path

import pytest

from cinderflow.drivers import qemu_img, qemu_locks
from cinderflow.drivers.base import ExtendOutcome, VolumeRef
from cinderflow.drivers.file import GIB, FileDriver
from tests.fake_compute import Guest, needs_qemu


def raw_file(tmp_path: Path, size: int = GIB) -> Path:
    path = tmp_path / "disk.raw"
    path.touch()
    os.truncate(path, size)
    return path


def test_grows_and_never_shrinks(tmp_path: Path) -> None:
    path = raw_file(tmp_path, 2 * GIB)
    qemu_locks.grow_raw(path, 3 * GIB)
    assert path.stat().st_size == 3 * GIB
    qemu_locks.grow_raw(path, 2 * GIB)  # a late, overlapping attempt for an older size
    assert path.stat().st_size == 3 * GIB
    assert qemu_img.info(path)["virtual-size"] == 3 * GIB


@needs_qemu
def test_a_running_guest_refuses_it_as_it_refuses_qemu_img(tmp_path: Path) -> None:
    path = raw_file(tmp_path)
    guest = Guest(path, tmp_path)
    try:
        with pytest.raises(qemu_locks.ImageInUse):
            qemu_locks.grow_raw(path, 2 * GIB)
        assert path.stat().st_size == GIB
        refused = subprocess.run(
            [qemu_img.binary(), "resize", "-f", "raw", str(path), "2G"], capture_output=True
        )
        assert qemu_img.LOCKED in refused.stderr.decode()
    finally:
        guest.stop()
    qemu_locks.grow_raw(path, 2 * GIB)  # the guest has gone: its locks went with it
    assert path.stat().st_size == 2 * GIB


@needs_qemu
def test_a_guest_cannot_start_on_a_file_being_resized(tmp_path: Path) -> None:
    path = raw_file(tmp_path)
    with qemu_locks.held_for_resize(path), pytest.raises(AssertionError, match="qemu exited"):
        Guest(path, tmp_path).stop()
    Guest(path, tmp_path).stop()


@needs_qemu
def test_the_file_driver_hands_an_attached_extend_to_the_compute(tmp_path: Path) -> None:
    driver = FileDriver("files", {"path": str(tmp_path / "vols")})
    driver.do_setup()
    volume = VolumeRef(id="v-1", size=1, project_id="p")
    driver.create_volume(volume)
    guest = Guest(driver.path(volume), tmp_path)
    try:
        assert driver.extend_volume(volume, 2) is ExtendOutcome.NEEDS_COMPUTE_COMPLETION
        guest.resize(2 * GIB)  # what the compute does (QMP block_resize)
        assert driver.extend_volume(volume, 2) is ExtendOutcome.DONE
    finally:
        guest.stop()


def test_a_grow_that_holds_the_size_lock_makes_a_late_smaller_one_wait(tmp_path: Path) -> None:
    """The size check and the truncate are one step among our attempts: a late attempt for a
    smaller size, started while another holds the step, cannot cut the file back."""
    path = raw_file(tmp_path)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, qemu_locks._flock(fcntl.F_WRLCK, qemu_locks.GROW_BYTE))
        late = threading.Thread(target=qemu_locks.grow_file, args=(path, 2 * GIB))
        late.start()
        late.join(0.3)
        assert late.is_alive(), "the late attempt must wait for the step in progress"
        os.ftruncate(fd, 3 * GIB)  # the step in progress grows further
    finally:
        os.close(fd)  # ends the step (the lock goes with the description)
    late.join(10)
    assert path.stat().st_size == 3 * GIB
    assert path.stat().st_blocks == 0  # still sparse
