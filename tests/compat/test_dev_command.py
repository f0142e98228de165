"""`cinderflow dev`: one command up, real clients work, Ctrl-C leaves nothing running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cinderflow.temporal.devserver import free_port
from tests.helpers import Api, poll

pytestmark = pytest.mark.slow


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )


class Dev:
    def __init__(self, data_dir: Path, log: Path) -> None:
        self.port, self.temporal_port, self.ui_port = free_port(), free_port(), free_port()
        self.data_dir, self.log = data_dir, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Dev:
        self.log.write_text("")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cinderflow",
                    "dev",
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    str(self.port),
                    "--temporal-port",
                    str(self.temporal_port),
                    "--ui-port",
                    str(self.ui_port),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        poll(
            lambda: "is running" in self.log.read_text() or self.proc.poll() is not None,
            timeout=60,
            what="cinderflow dev to start",
        )
        assert self.proc.poll() is None, self.log.read_text()
        return self

    def interrupt(self) -> int:
        assert self.proc is not None
        family = descendants(self.proc.pid)
        assert family, "the Temporal dev server should be a child process"
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(60)
        poll(lambda: not any(alive(pid) for pid in family), timeout=30, what="children to exit")
        return code


def test_dev_serves_persists_and_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    dev = Dev(data, tmp_path / "dev.log").start()
    try:
        output = dev.log.read_text()
        assert f"http://127.0.0.1:{dev.port}/v3" in output
        assert f"http://127.0.0.1:{dev.ui_port}" in output
        root = httpx.get(f"http://127.0.0.1:{dev.port}/")
        assert root.status_code == 300 and root.json()["versions"][0]["version"] == "3.72"
        poll(
            lambda: httpx.get(f"http://127.0.0.1:{dev.ui_port}/").status_code == 200,
            what="Temporal UI",
        )

        api = Api(f"http://127.0.0.1:{dev.port}")
        volume_id = api.available_volume(name="kept")["id"]
        assert (data / "volumes" / f"volume-{volume_id}").exists()
    finally:
        code = dev.interrupt()
    assert code == 0
    assert "cinderflow dev stopped" in dev.log.read_text()

    again = Dev(data, tmp_path / "dev2.log").start()
    try:
        kept = Api(f"http://127.0.0.1:{again.port}", project=api.project).volume(volume_id)
        assert kept is not None and kept["status"] == "available" and kept["name"] == "kept"
    finally:
        assert again.interrupt() == 0


def test_second_dev_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    first = Dev(tmp_path, tmp_path / "first.log").start()
    try:
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "cinderflow",
                "dev",
                "--data-dir",
                str(tmp_path),
                "--port",
                str(free_port()),
                "--temporal-port",
                str(free_port()),
                "--ui-port",
                str(free_port()),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert "is in use by another cinderflow dev" in second.stderr
    finally:
        assert first.interrupt() == 0
