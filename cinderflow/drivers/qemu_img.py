"""A thin, explicit wrapper over `qemu-img` (Debian `qemu-utils`).

The format is always passed (`-f`), never probed: probing a guest-written raw volume is a known
security hole (a guest can write a qcow2 header pointing at host files).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cinderflow.drivers.base import BackendTemporarilyUnavailable, VolumeDriverError


class QemuImgError(VolumeDriverError):
    """qemu-img exited non-zero; the message carries its stderr."""


class QemuImgFlaky(BackendTemporarilyUnavailable):
    """qemu-img failed in a way a later attempt does not (see PBKDF_FLAKE): retried."""


def binary() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        raise VolumeDriverError("qemu-img not found: install qemu-utils")
    return path


PBKDF_FLAKE = "Unable to get accurate CPU usage"
"""Debian 12's qemu 7.2 sometimes fails to time PBKDF when writing a LUKS header (a known,
upstream-fixed bug), more often under CPU load. Only that exact failure is retried: here a few
times, then by the activity's retries (QemuImgFlaky), never ending the operation in error."""
PBKDF_ATTEMPTS = 5
PBKDF_BACKOFF_S = 0.25
"""Waited before the n-th retry n times over: the flake comes with CPU contention, which a
retry at once meets again."""


def run(*args: str, timeout: float | None = None, secret: bytes | None = None) -> str:
    """Run qemu-img; `secret` is readable by it as `/dev/fd/N` (see `secret_object`), never
    in its arguments or in a file."""
    command = [binary(), *args]
    for attempt in range(1, PBKDF_ATTEMPTS + 1):
        read_end = None
        if secret is not None:
            read_end, write_end = os.pipe()
            os.write(write_end, secret)
            os.close(write_end)
            command = [binary(), *(a.replace(SECRET_FD, str(read_end)) for a in args)]
        try:
            proc = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                pass_fds=(read_end,) if read_end is not None else (),
            )
        finally:
            if read_end is not None:
                os.close(read_end)
        if proc.returncode == 0:
            return proc.stdout
        failure = f"qemu-img {args[0]} failed: {proc.stderr.strip()}"
        if PBKDF_FLAKE not in proc.stderr:
            raise QemuImgError(failure)
        if attempt < PBKDF_ATTEMPTS:
            time.sleep(PBKDF_BACKOFF_S * attempt)
    raise QemuImgFlaky(f"{failure} ({PBKDF_ATTEMPTS} attempts)")


SECRET_FD = "{secret_fd}"
LOCKED = 'Failed to get "write" lock'
"""What qemu-img says when another process (a running guest) holds the image."""


def secret_object(name: str = "sec0") -> str:
    """`--object` value reading the secret from the pipe `run(..., secret=...)` provides."""
    return f"secret,id={name},file=/dev/fd/{SECRET_FD}"


def luks_options(cipher: str | None, key_size: int | None, iter_time_ms: int | None) -> str:
    """qemu's LUKS create options from Cinder's encryption spec (e.g. aes-xts-plain64, 256:
    XTS splits the key in two, so that is AES-128 in XTS mode)."""
    options = ["key-secret=sec0"]
    if cipher:
        parts = cipher.split("-")
        if len(parts) != 3:
            raise VolumeDriverError(f"cipher {cipher} is not <algorithm>-<mode>-<ivgen>")
        algorithm, mode, ivgen = parts
        if key_size:
            bits = key_size // 2 if mode == "xts" else key_size
            if bits not in (128, 192, 256):
                raise VolumeDriverError(f"key size {key_size} does not fit cipher {cipher}")
            options.append(f"cipher-alg={algorithm}-{bits}")
        options += [f"cipher-mode={mode}", f"ivgen-alg={ivgen}"]
    if iter_time_ms:
        options.append(f"iter-time={iter_time_ms}")
    return ",".join(options)


def create_luks(path: Path, size_gib: int, secret: bytes, options: str) -> None:
    """An empty LUKS1 image whose payload (virtual size) is `size_gib`."""
    run(
        "create",
        "-q",
        "--object",
        secret_object(),
        "-f",
        "luks",
        "-o",
        options,
        str(path),
        f"{size_gib}G",
        secret=secret,
    )


def luks_image_opts(path: Path) -> str:
    return f"driver=luks,file.driver=file,file.filename={path},key-secret=sec0"


def resize_luks(path: Path, size_gib: int, secret: bytes) -> None:
    run(
        "resize",
        "-q",
        "--object",
        secret_object(),
        "--image-opts",
        luks_image_opts(path),
        f"{size_gib}G",
        secret=secret,
    )


def read_luks(path: Path, offset: int, length: int, secret: bytes) -> bytes:
    """Decrypted bytes of a LUKS image (tests, verification); a wrong key fails."""
    with tempfile.TemporaryDirectory() as scratch:
        plain = Path(scratch) / "plain.raw"
        run(
            "dd",
            "--object",
            secret_object(),
            "--image-opts",
            "-O",
            "raw",
            f"if={luks_image_opts(path)}",
            f"of={plain}",
            "bs=512",
            f"skip={offset // 512}",
            f"count={-(-(offset % 512 + length) // 512)}",
            secret=secret,
        )
        with open(plain, "rb") as handle:
            return handle.read()[offset % 512 : offset % 512 + length]


PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


def copy(
    source: Path,
    target: Path,
    fmt: str = "raw",
    *,
    progress: Callable[[float], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> None:
    """A sparse copy (runs of zeros are not written); the bytes are copied as they are, so a
    LUKS volume copied as `raw` stays encrypted with the same key.

    `progress(percent)` is called as qemu-img reports it (`-p`); when `stop()` turns true the
    copy is killed and VolumeDriverError raised (the target is left to the caller)."""
    command = [
        binary(),
        "convert",
        "-p",
        "-f",
        fmt,
        "-O",
        fmt,
        "-S",
        "4k",
        str(source),
        str(target),
    ]
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
        assert proc.stdout is not None
        try:
            while chunk := proc.stdout.read1(256):
                reports = PROGRESS.findall(chunk)
                if reports and progress is not None:
                    progress(float(reports[-1]))
                if stop is not None and stop():
                    proc.kill()
                    raise VolumeDriverError("the copy was stopped: its operation ended")
        finally:
            proc.stdout.close()
            proc.wait()
        if proc.returncode != 0:
            errors.seek(0)
            raise QemuImgError(f"qemu-img convert failed: {errors.read().decode().strip()}")


def info(path: Path, fmt: str = "raw") -> dict[str, Any]:
    return json.loads(run("info", "--output=json", "-f", fmt, str(path)))
