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
    def __init__(
        self, data_dir: Path, log: Path, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.port, self.temporal_port, self.ui_port = free_port(), free_port(), free_port()
        self.data_dir, self.log = data_dir, log
        self.args, self.env = args, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, umask: int | None = None) -> Dev:
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
                    *self.args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(self.env or {})},
                preexec_fn=None if umask is None else lambda: os.umask(umask),
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


def listening(port: int) -> set[str]:
    """The local addresses a TCP port listens on (/proc/net/tcp and tcp6; IPv6 ones in hex)."""
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:
                continue
            if table == "tcp":
                found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
            else:
                found.add(f"v6:{address}")
    return found


def test_noauth_refuses_an_address_beyond_loopback(tmp_path: Path) -> None:
    for command in ("api", "dev"):
        refused = subprocess.run(
            [sys.executable, "-m", "cinderflow", command, "--host", "0.0.0.0", "--port",
             str(free_port()), *(["--data-dir", str(tmp_path)] if command == "dev" else [])],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "CINDERFLOW_DATA_DIR": str(tmp_path)},
        )  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        assert "refusing to serve the API on 0.0.0.0 with auth_strategy noauth" in refused.stderr
        assert "CINDERFLOW_INSECURE_NOAUTH_ANY_ADDRESS" in refused.stderr
    assert not (tmp_path / "temporal.sqlite").exists(), "nothing was started"


def test_dev_keeps_temporal_on_loopback_and_every_file_private(tmp_path: Path) -> None:
    """Probe findings H2 and M3: with the API given 0.0.0.0 (and the insecure setting),
    Temporal and its UI still listen on 127.0.0.1 only; started under umask 022, no file
    under the data directory is readable by group or others and directories are 0700."""
    data = tmp_path / "data"
    dev = Dev(
        data, tmp_path / "dev.log", "--host", "0.0.0.0",
        env={"CINDERFLOW_INSECURE_NOAUTH_ANY_ADDRESS": "true"},
    ).start(umask=0o022)  # fmt: skip
    try:
        assert listening(dev.port) == {"0.0.0.0"}
        assert listening(dev.temporal_port) == {"127.0.0.1"}
        assert listening(dev.ui_port) == {"127.0.0.1"}
        api = Api(f"http://127.0.0.1:{dev.port}")
        vtype = api.post("/types", {"volume_type": {"name": "enc"}}).json()["volume_type"]
        luks = {"provider": "luks", "cipher": "aes-xts-plain64", "key_size": 256,
                "control_location": "front-end"}  # fmt: skip
        assert api.post(f"/types/{vtype['id']}/encryption", {"encryption": luks}).status_code == 200
        plain = api.available_volume(1)
        encrypted = api.available_volume(1, volume_type="enc")
        for source in (plain, encrypted):
            snap = api.post("/snapshots", {"snapshot": {"volume_id": source["id"]}}).json()
            poll(
                lambda s=snap: (
                    api.get(f"/snapshots/{s['snapshot']['id']}").json()["snapshot"]["status"]
                    == "available"
                ),
                what="snapshot",
            )
            api.available_volume(1, source_volid=source["id"])
            api.available_volume(1, snapshot_id=snap["snapshot"]["id"])
    finally:
        assert dev.interrupt() == 0
    found = subprocess.run(
        ["find", str(data), "-perm", "/044", "-type", "f"], capture_output=True, text=True
    )
    assert found.stdout == "", found.stdout
    volumes = list((data / "volumes").glob("volume-*")) + list((data / "volumes").glob("snap*"))
    assert len(volumes) == 8, volumes  # 2 sources, their 2 snapshots, 2 clones, 2 restores
    loose = [p for p in data.rglob("*") if p.is_dir() and p.stat().st_mode & 0o077]
    assert loose == [] and data.stat().st_mode & 0o077 == 0
    assert {p.name for p in data.iterdir()} >= {"cinderflow.sqlite", "temporal.sqlite"}
