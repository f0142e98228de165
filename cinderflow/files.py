"""Private files: what cinderflow writes (volume, snapshot and clone files, keys, databases,
logs, staged images) is for its own user only, whatever umask it was started with.

Two layers, because either alone has a gap: the process umask makes every file private from
the moment it exists (qemu-img and the Temporal dev server inherit it), and directories are
made 0700, which also covers files an earlier version or another tool left readable inside.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def keep_private() -> None:
    """Every file and directory this process (and its children) creates is private."""
    os.umask(PRIVATE_UMASK)


def private_directory(path: Path, *, files: bool = False) -> Path:
    """`path` as a directory only its owner can enter (made if missing, tightened if not);
    with `files`, the regular files directly in it are made 0600 too (a data directory an
    earlier version wrote under a looser umask)."""
    path.mkdir(parents=True, exist_ok=True, mode=DIRECTORY_MODE)
    _tighten(path, DIRECTORY_MODE)
    if files:
        for entry in path.iterdir():
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
