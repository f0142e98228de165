"""qcow2+LUKS image -> raw LUKS volume: the file driver's conversion against `qemu-img convert`
alone on the same files, in MiB/s of guest data.

The driver path is `FileDriver.copy_image_to_volume` (inspect the image with a forced driver,
create the volume's LUKS header, `qemu-img convert -n` into it with both secrets through pipes,
publish the file); "qemu-img alone" is one `qemu-img convert ... -O luks` into a new file, the
least any conversion must do. Both create one LUKS header with the same `iter-time` (10 ms
here, so the PBKDF calibration does not dominate; the product keeps QEMU's default). Data is
incompressible random bytes, so neither side can skip it.

    python -m tests.bench.image_conversion                 # 256 MiB and 1024 MiB, 3 runs each
    python -m tests.bench.image_conversion --sizes 2048 --runs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from cinderflow.drivers.base import EncryptionSpec, ImageFile, VolumeRef
from cinderflow.drivers.file import FileDriver
from tests.images import qcow2_luks

MIB = 1024**2
GIB = 1024**3
IMAGE_PASSPHRASE = "bench-image-pässphrase".encode()
VOLUME_PASSPHRASE = b"bench-volume-passphrase"
ITER_TIME_MS = 10


class Keys:
    """The two secrets, as the key service would hand them to the driver."""

    def passphrase(self, project_id: str, key_id: str) -> bytes:
        return IMAGE_PASSPHRASE if key_id == "image" else VOLUME_PASSPHRASE


def _random_file(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        for _ in range(size // (16 * MIB)):
            handle.write(os.urandom(16 * MIB))


def qemu_img_alone(image: Path, target: Path) -> float:
    target.unlink(missing_ok=True)
    source_r, source_w = os.pipe()
    target_r, target_w = os.pipe()
    for fd, secret in ((source_w, IMAGE_PASSPHRASE), (target_w, VOLUME_PASSPHRASE)):
        os.write(fd, secret)
        os.close(fd)
    started = time.perf_counter()
    subprocess.run(
        [
            "qemu-img", "convert",
            "--object", f"secret,id=src,file=/dev/fd/{source_r}",
            "--object", f"secret,id=dst,file=/dev/fd/{target_r}",
            "--image-opts", f"driver=qcow2,file.filename={image},encrypt.key-secret=src",
            "-O", "luks", "-o", f"key-secret=dst,iter-time={ITER_TIME_MS}",
            str(target),
        ],
        check=True, pass_fds=(source_r, target_r),
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    os.close(source_r)
    os.close(target_r)
    return elapsed


def driver_conversion(image: Path, root: Path, size_gib: int, run: int) -> float:
    driver = FileDriver(
        "bench", {"path": str(root), "luks_iter_time_ms": ITER_TIME_MS}, keys=Keys()
    )
    driver.do_setup()
    volume = VolumeRef(
        id=f"bench-{run}",
        size=size_gib,
        project_id="bench",
        encryption=EncryptionSpec(provider="luks", cipher="aes-xts-plain64", key_size=256),
        encryption_key_id="volume",
    )
    started = time.perf_counter()
    driver.copy_image_to_volume(
        volume, ImageFile(path=str(image), disk_format="qcow2", encrypted=True, key_id="image")
    )
    elapsed = time.perf_counter() - started
    driver.delete_volume(volume)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024], help="MiB")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cf-bench-") as scratch:
        tmp = Path(scratch)
        for size in args.sizes:
            plain = tmp / "plain.raw"
            _random_file(plain, size * MIB)
            image = qcow2_luks(plain, tmp / "image.qcow2", IMAGE_PASSPHRASE)
            plain.unlink()
            size_gib = -(-size * MIB // GIB)
            alone, ours = [], []
            for run in range(args.runs):  # alternate which goes first
                for side in ("alone", "ours") if run % 2 == 0 else ("ours", "alone"):
                    if side == "alone":
                        alone.append(qemu_img_alone(image, tmp / "alone.luks"))
                    else:
                        ours.append(driver_conversion(image, tmp / "volumes", size_gib, run))
            rows.append((size, size / statistics.median(alone), size / statistics.median(ours)))
            image.unlink()
    print(f"{'image MiB':>10} | {'qemu-img alone MiB/s':>21} | {'driver MiB/s':>13} | ratio")
    print("-" * 64)
    for size, alone_rate, our_rate in rows:
        print(f"{size:>10} | {alone_rate:>21.1f} | {our_rate:>13.1f} | {our_rate / alone_rate:.2f}")


if __name__ == "__main__":
    main()
