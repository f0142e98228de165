"""Private files: what cinderflow writes (volume, snapshot and clone files, keys, databases,
logs, staged images) is for its own user only, whatever umask it was started with.

Two layers, because either alone has a gap: the process umask makes every file private from
the moment it exists (qemu-img and the Temporal dev server inherit it), and directories are
made 0700, which also covers files an earlier version or another tool left readable inside.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time
from collections.abc import Sequence
from pathlib import Path

PRIVATE_UMASK = 0o077
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def keep_private() -> None:
    """Every file and directory this process (and its children) creates is private."""
    os.umask(PRIVATE_UMASK)


DATA_FILES = (
    "cinderflow.sqlite", "cinderflow.sqlite-wal", "cinderflow.sqlite-shm",
    "temporal.sqlite", "temporal.sqlite-wal", "temporal.sqlite-shm",
    "temporal.log", "master.key", "idempotency.secret", "host", ".dev.lock",
)  # fmt: skip
"""What cinderflow itself writes directly into a data directory."""


def private_directory(path: Path, *, tighten: bool = True, files: Sequence[str] = ()) -> Path:
    """`path` as a directory only its owner can enter: made 0700 if missing; an existing one
    tightened too unless `tighten` is false (a directory cinderflow shares with others, such
    as the one a configured master key lives in); the named `files` in it made 0600 (what an
    earlier version wrote under a looser umask)."""
    existed = path.is_dir()
    path.mkdir(parents=True, exist_ok=True, mode=DIRECTORY_MODE)
    if tighten or not existed:
        _tighten(path, DIRECTORY_MODE)
    for name in files:
        entry = path / name
        if entry.is_file() and not entry.is_symlink():
            _tighten(entry, FILE_MODE)
    return path


def tighten_file(path: Path) -> None:
    """Make an existing file 0600 (one a tool created with a mode of its own)."""
    _tighten(path, FILE_MODE)


def _tighten(path: Path, mode: int) -> None:
    """chmod to `mode` if looser; a path owned by someone else is left as it is (the
    directory of a shared mount: not ours to change)."""
    with contextlib.suppress(FileNotFoundError, PermissionError):
        if stat.S_IMODE(path.stat().st_mode) & ~mode:
            os.chmod(path, mode)


SECRET_BYTES = 32


def secret_file(path: Path, what: str = "secret") -> bytes:
    """The 32 random bytes in `path` (a master key, the idempotency secret), made on first use
    with mode 0600; a file others can read is refused. A new one is written aside and linked
    into place, so processes starting together agree on one and none reads it half-written."""
    for _attempt in range(100):
        try:
            secret = path.read_bytes()
        except FileNotFoundError:
            private_directory(path.parent, tighten=False)  # maybe ~ or /etc/cinderflow
            aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
            descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(secrets.token_bytes(SECRET_BYTES))
            try:
                os.link(aside, path)
            except FileExistsError:
                pass  # another process published its own first: that one it is
            finally:
                aside.unlink()
            continue
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PermissionError(f"{what} {path} must not be readable by group or others")
        if len(secret) == SECRET_BYTES:
            return secret
        time.sleep(0.05)  # written by a tool other than this function: let it finish
    raise ValueError(f"{what} {path} must hold exactly {SECRET_BYTES} bytes")
