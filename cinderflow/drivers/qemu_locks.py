"""Growing a raw image file the way `qemu-img resize` does, without starting qemu-img.

A raw, unencrypted volume file grows by a sparse truncate; spawning
`qemu-img resize` for it cost an extend more CPU and wall time than the rest of the driver
call. What qemu-img adds is QEMU's image locking, and that is kept here: QEMU (file-posix)
takes open-file-description (OFD) read locks on single bytes of the image: byte 100+i while
it *uses* permission i, byte 200+i while it *does not share* permission i with others (i: 0
consistent read, 1 write, 3 resize). A running guest holds 100, 101 and 201, so:

- before growing we take what qemu-img resize takes for the permissions it uses (write and
  resize: bytes 101 and 103), so a guest that starts meanwhile fails to open the image, as it
  would against qemu-img;
- we refuse when another holder does not share those permissions (bytes 201, 203), as
  qemu-img does with `Failed to get "write" lock`: the guest's QEMU has to do the resize
  (online extend through the compute).

The locks belong to our own open file description and go with it when it is closed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
from collections.abc import Iterator
from pathlib import Path

from cinderflow.drivers.base import VolumeDriverError

PERM_BASE = 100
SHARED_BASE = 200
WRITE = 1
RESIZE = 3
GROW_BYTE = 300
"""Locked exclusively by our own growing attempts only; QEMU locks bytes 100-1xx and 200-2xx."""
USED_FOR_RESIZE = (WRITE, RESIZE)
"""The permissions a resize uses (qemu-img opens the image read-write, with resize)."""

_FLOCK = "hhqqi4x"
"""struct flock on Linux (x86_64 and aarch64): l_type, l_whence, l_start, l_len, l_pid."""


class ImageInUse(VolumeDriverError):
    """Another process (a running guest's QEMU) holds the image and does not share writing
    or resizing it: only that process can resize it."""


def _flock(kind: int, byte: int) -> bytes:
    return struct.pack(_FLOCK, kind, os.SEEK_SET, byte, 1, 0)


def _held_by_another(fd: int, byte: int) -> bool:
    """Whether another open file description holds a lock on `byte` (OFD locks of our own
    description never conflict with our test)."""
    answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock(fcntl.F_WRLCK, byte))
    return struct.unpack(_FLOCK, answer)[0] != fcntl.F_UNLCK


@contextlib.contextmanager
def held_for_resize(path: Path) -> Iterator[int]:
    """The image opened read-write with QEMU's locks for a resize taken; ImageInUse when a
    running QEMU holds it. Yields the file descriptor."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        for permission in USED_FOR_RESIZE:
            try:
                fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_RDLCK, PERM_BASE + permission))
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise  # no OFD locks here (ENOLCK, EINVAL...): a driver error, not a guest
                raise ImageInUse(f"{path} is locked by another process") from error
        for permission in USED_FOR_RESIZE:
            if _held_by_another(fd, SHARED_BASE + permission):
                raise ImageInUse(f"{path} is in use by another process (a running guest)")
        yield fd
    finally:
        os.close(fd)


def grow_raw(path: Path, size_bytes: int) -> None:
    """Grow a raw image that a guest may hold to at least `size_bytes`, under QEMU's locks."""
    with held_for_resize(path) as fd:
        grow_open(fd, size_bytes)


def grow_file(path: Path, size_bytes: int) -> None:
    """Grow a file no guest can hold yet (a new volume, a fresh copy) to at least
    `size_bytes`."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        grow_open(fd, size_bytes)
    finally:
        os.close(fd)


def grow_open(fd: int, size_bytes: int) -> None:
    """Grow sparsely, never shrink, and make the size durable before the caller records it.

    Our own attempts take GROW_BYTE exclusively around the size check and the truncate, so a
    late, overlapping attempt for an older, smaller size (a retried create after an extend)
    cannot cut back what another attempt grew."""
    fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, _flock(fcntl.F_WRLCK, GROW_BYTE))
    if os.fstat(fd).st_size < size_bytes:
        os.ftruncate(fd, size_bytes)
    os.fdatasync(fd)
