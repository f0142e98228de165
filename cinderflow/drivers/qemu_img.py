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

from oslo_utils.imageutils import format_inspector

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
    """Decrypted bytes of a LUKS image (tests, verification); a wrong key fails. It reads the
    image from its start (qemu 7.2's `dd` refuses a `skip` into many images), so keep
    `offset` to a few MiB."""
    block = 64 * 1024
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
            f"bs={block}",
            f"count={-(-(offset + length) // block)}",
            secret=secret,
        )
        with open(plain, "rb") as handle:
            handle.seek(offset)
            return handle.read(length)


PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


def copy(
    source: Path,
    target: Path,
    fmt: str = "raw",
    *,
    source_format: str | None = None,
    shared: bool = False,
    progress: Callable[[float], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> None:
    """A sparse copy (runs of zeros are not written) from `source_format` (default: `fmt`)
    into a new `fmt` file; raw to raw copies the bytes as they are, so a LUKS volume copied as
    `raw` stays encrypted with the same key. `shared`: read a file another process (a running
    guest) holds (`-U`; what is read is crash-consistent at best).

    `progress(percent)` is called as qemu-img reports it (`-p`); when `stop()` turns true the
    copy is killed and VolumeDriverError raised (the target is left to the caller)."""
    command = [binary(), "convert", "-p", *(["-U"] if shared else [])]
    command += ["-f", source_format or fmt, "-O", fmt, "-S", "4k", str(source), str(target)]
    _convert(command, progress, stop)


def image_opts(path: Path, secret_id: str | None = None, fmt: str = "raw") -> str:
    """`--image-opts` of a file in format `fmt`; a raw one with a secret is LUKS opened with
    `secret_id`, a qcow2 one with a secret has LUKS encryption inside."""
    filename = str(path).replace(",", ",,")  # a comma in a value is written twice
    if fmt == "raw" and secret_id is not None:
        return f"driver=luks,file.driver=file,file.filename={filename},key-secret={secret_id}"
    opts = f"driver={fmt},file.driver=file,file.filename={filename}"
    if secret_id is not None:
        opts += f",encrypt.key-secret={secret_id}"
    return opts


def convert_into(
    source: Path,
    target: Path,
    *,
    source_secret: bytes | None = None,
    target_secret: bytes | None = None,
    source_format: str = "raw",
    progress: Callable[[float], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> None:
    """Copy the guest-visible bytes of `source` into the existing `target` (`-n`), each raw or
    LUKS (opened with its passphrase, handed over through its own pipe): a migration's copy,
    re-encrypting on the way when the keys differ. The source may be another format
    (`source_format`: an image's qcow2, with LUKS inside when it has a secret). Zeros are
    not written to a raw target (it stays sparse); a LUKS target gets them encrypted (its
    unwritten sectors would not read back as zeros). `progress` and `stop` as in `copy`.

    A raw target must read as zeros where the source does (it was created empty, and an
    earlier attempt of the same copy wrote only what the source holds), so its zeros are
    skipped (`--target-is-zero`)."""
    pipes: list[int] = []
    args = ["convert", "-p", "-n", "-S", "4k"]
    if target_secret is None:
        args.append("--target-is-zero")
    opts = []
    sides = ((source, source_secret, "src", source_format), (target, target_secret, "dst", "raw"))
    for path, secret, name, fmt in sides:
        if secret is not None:
            read_end, write_end = os.pipe()
            os.write(write_end, secret)
            os.close(write_end)
            pipes.append(read_end)
            args += ["--object", f"secret,id={name},file=/dev/fd/{read_end}"]
        opts.append(image_opts(path, name if secret is not None else None, fmt))
    args += ["--image-opts", opts[0], "--target-image-opts", opts[1]]
    try:
        _convert([binary(), *args], progress, stop, pass_fds=tuple(pipes))
    finally:
        for fd in pipes:
            os.close(fd)


def _convert(
    command: list[str],
    progress: Callable[[float], None] | None,
    stop: Callable[[], bool] | None,
    pass_fds: tuple[int, ...] = (),
) -> None:
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, pass_fds=pass_fds)
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


IMAGE_FORMATS = {
    "raw": "raw",
    "qcow2": "qcow2",
    "vmdk": "vmdk",
    "vdi": "vdi",
    "vhd": "vpc",
    "vhdx": "vhdx",
}
"""The image service's disk formats qemu-img reads and writes, by its own driver names."""


INSPECT_LIMITS = ["prlimit", "--as=1073741824", "--cpu=30", "--"]
"""What `qemu-img info` of an untrusted image may use (Cinder's limits): a crafted header
must not take the worker's memory or a core for long."""
VMDK_SELF_CONTAINED = ("monolithicSparse", "streamOptimized")


def inspect_image(path: Path, fmt: str) -> dict[str, Any]:
    """What an untrusted image is, opened as `fmt` (never probed). First its header is
    parsed without QEMU (oslo.utils' format inspector, as Cinder since OSSA-2024-001): an
    image that names other files (a backing file, an external data file, a VMDK extent
    elsewhere) is refused before anything opens them. Then `qemu-img info` under resource
    limits, with the same checks on what QEMU reports."""
    _safety_check(path, INSPECTOR_NAMES.get(fmt, fmt))
    command = [*INSPECT_LIMITS, binary(), "info", "--output=json", "-f", fmt, str(path)]
    if shutil.which("prlimit") is None:
        command = command[len(INSPECT_LIMITS) :]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise QemuImgError(f"qemu-img info failed: {proc.stderr.strip()[:500]}")
        facts = json.loads(proc.stdout)
    except (subprocess.TimeoutExpired, ValueError) as error:
        raise VolumeDriverError(f"the image could not be inspected: {error}") from None
    if facts.get("backing-filename") or facts.get("full-backing-filename"):
        raise VolumeDriverError("the image has a backing file, which is not allowed")
    data = (facts.get("format-specific") or {}).get("data") or {}
    if data.get("data-file"):
        raise VolumeDriverError("the image has an external data file, which is not allowed")
    if fmt == "vmdk":
        if data.get("create-type") not in VMDK_SELF_CONTAINED:
            raise VolumeDriverError(
                f"VMDK images must be {' or '.join(VMDK_SELF_CONTAINED)}, "
                f"not {data.get('create-type')}"
            )
        for extent in data.get("extents") or []:
            if Path(str(extent.get("filename", ""))).resolve() != path.resolve():
                raise VolumeDriverError("the VMDK image has an extent in another file")
    return facts


INSPECTOR_NAMES = {"vpc": "vhd"}
"""oslo.utils names formats as the image service does (qemu's `vpc` is its `vhd`)."""


def _safety_check(path: Path, name: str) -> None:
    inspector = format_inspector.get_inspector(name)
    if inspector is None:
        raise VolumeDriverError(f"images in format {name} cannot be inspected")
    try:
        inspector.from_file(str(path)).safety_check()
    except (format_inspector.ImageFormatError, format_inspector.SafetyCheckFailed) as unsafe:
        raise VolumeDriverError(f"the image is not a safe {name} image: {unsafe}") from None
