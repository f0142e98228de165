"""A thin, explicit wrapper over `qemu-img` (Debian `qemu-utils`).

The format is always passed (`-f`), never probed: probing a guest-written raw volume is a known
security hole (a guest can write a qcow2 header pointing at host files).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from cinderflow.drivers.base import VolumeDriverError


class QemuImgError(VolumeDriverError):
    """qemu-img exited non-zero; the message carries its stderr."""


def binary() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        raise VolumeDriverError("qemu-img not found: install qemu-utils")
    return path


def run(*args: str, timeout: float | None = None) -> str:
    proc = subprocess.run(
        [binary(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise QemuImgError(f"qemu-img {args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout


def copy(source: Path, target: Path, fmt: str = "raw") -> None:
    """A sparse copy (runs of zeros are not written); the bytes are copied as they are, so a
    LUKS volume copied as `raw` stays encrypted with the same key."""
    run("convert", "-q", "-f", fmt, "-O", fmt, "-S", "4k", str(source), str(target))


def info(path: Path, fmt: str = "raw") -> dict[str, Any]:
    return json.loads(run("info", "--output=json", "-f", fmt, str(path)))


def resize(path: Path, size_gib: int, fmt: str = "raw") -> None:
    run("resize", "-q", "-f", fmt, str(path), f"{size_gib}G")
