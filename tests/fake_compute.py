"""A compute service we cannot run here, as real HTTP, plus a real QEMU guest holding a volume.

`FakeCompute` answers `POST /os-server-external-events` like Nova. On a `volume-extended` event,
depending on `mode`, it reads `extend_new_size` from the volume's metadata through the Cinder
API, resizes the guest's disk through QMP (`block_resize`, as Nova's libvirt driver does), and
calls `os-extend_volume_completion`; or answers `error: true`; or stays silent; or refuses the
event. It answers the event first and completes afterwards, as Nova does.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from cinderflow.temporal.devserver import free_port
from tests.helpers import poll

QEMU = shutil.which("qemu-system-x86_64")
QMP_TIMEOUT_S = 30
needs_qemu = pytest.mark.skipif(
    QEMU is None and os.environ.get("CINDERFLOW_TEST_REQUIRE_QEMU") != "1",
    reason="needs qemu-system-x86_64 (Debian qemu-system-x86); CI requires it",
)


class Guest:
    """A paused QEMU guest with a volume file as its disk: it holds QEMU's write lock."""

    def __init__(self, volume_file: Path, workdir: Path) -> None:
        assert QEMU, "qemu-system-x86_64 is needed (Debian package qemu-system-x86)"
        self.socket_path = workdir / f"qmp-{volume_file.name[-12:]}.sock"
        self.socket_path.unlink(missing_ok=True)  # an earlier guest's, which would answer nothing
        self.process = subprocess.Popen(
            [QEMU, "-M", "q35,accel=tcg", "-S", "-nodefaults", "-display", "none", "-m", "64",
             "-blockdev", f"driver=file,node-name=f0,filename={volume_file}",
             "-blockdev", "driver=raw,node-name=r0,file=f0",
             "-device", "virtio-blk-pci,drive=r0",
             "-qmp", f"unix:{self.socket_path},server=on,wait=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def listening() -> bool:
            assert self.process.poll() is None, "qemu exited"
            return self.socket_path.exists()

        try:
            poll(listening, timeout=30, interval=0.05, what="qemu's QMP socket")
        except BaseException:
            self.stop()
            raise
        # The socket exists before the disk is opened; QMP answers only from the main loop,
        # after every device (and so the image's locks) is in place.
        try:
            ready = "return" in self.qmp("query-status")
        except (OSError, ValueError):  # it exited (could not lock the image) after the socket
            ready = False
        if not ready or self.process.poll() is not None:
            self.stop()
            raise AssertionError("qemu exited")

    def qmp(self, command: str, **arguments: Any) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(QMP_TIMEOUT_S)  # a hung QEMU fails the test, not hangs it
            sock.connect(str(self.socket_path))
            stream = sock.makefile("rw")
            stream.readline()  # greeting
            for message in ({"execute": "qmp_capabilities"},
                            {"execute": command, "arguments": arguments}):  # fmt: skip
                stream.write(json.dumps(message) + "\n")
                stream.flush()
                reply = json.loads(stream.readline())
            return reply

    def resize(self, size_bytes: int) -> None:
        reply = self.qmp("block_resize", **{"node-name": "r0", "size": size_bytes})
        assert "return" in reply, reply

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class FakeCompute:
    def __init__(self, cinder_url: str, mode: str = "complete") -> None:
        self.cinder_url = cinder_url
        self.project = ""
        """The project whose volumes the compute's servers use (set by each test)."""
        self.mode = mode
        """complete | error | silent | refuse"""
        self.events: list[dict[str, Any]] = []
        self.versions: list[str] = []
        """The OpenStack-API-Version header of each events request."""
        self.guests: dict[str, Guest] = {}
        """volume id -> the guest holding it"""
        self.seen: dict[str, dict[str, Any]] = {}
        """volume id -> the volume as the compute read it on its event"""
        self.completions: list[httpx.Response] = []
        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2.1"

    def start(self) -> FakeCompute:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for guest in self.guests.values():
            guest.stop()

    def reset(self, project: str, mode: str) -> None:
        """A fresh scenario: `project`'s servers, answering as `mode`."""
        self.project, self.mode = project, mode
        self.events.clear()
        self.versions.clear()
        self.seen.clear()
        self.completions.clear()
        for guest in self.guests.values():
            guest.stop()
        self.guests.clear()

    def hold(self, volume_id: str, volume_file: Path) -> Guest:
        """Start a guest that holds `volume_file` open, as a running instance does."""
        guest = self.guests[volume_id] = Guest(volume_file, Path(tempfile.mkdtemp(prefix="qmp-")))
        return guest

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        compute = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                events = body.get("events", [])
                compute.events.extend(events)
                compute.versions.append(self.headers.get("OpenStack-API-Version", ""))
                if compute.mode == "refuse":
                    self._answer(404, {"itemNotFound": {"code": 404, "message": "No instances"}})
                    return
                self._answer(200, {"events": [{**e, "code": 200, "status": "completed"}
                                              for e in events]})  # fmt: skip
                for event in events:
                    threading.Thread(target=compute._handle, args=(event,), daemon=True).start()

            def _answer(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _cinder(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.cinder_url}/v3/{self.project}", timeout=30, headers={
            "X-Auth-Token": f"nova:{self.project}", "X-Roles": "reader,service",
            "OpenStack-API-Version": "volume 3.71"})  # fmt: skip

    def _handle(self, event: dict[str, Any]) -> None:
        """What Nova's compute does with volume-extended: grow the guest's disk to the volume's
        size, or, while the volume is `extending`, to `extend_new_size`, then complete."""
        if self.mode == "silent" or event["name"] != "volume-extended":
            return
        volume_id = event["tag"]
        with self._cinder() as cinder:
            volume = self.seen[volume_id] = cinder.get(f"/volumes/{volume_id}").json()["volume"]
            if volume["status"] != "extending":
                return
            error = self.mode == "error"
            if not error:
                new_size = int(volume["metadata"]["extend_new_size"])
                guest = self.guests.get(volume_id)
                if guest is not None:
                    guest.resize(new_size << 30)
            self.completions.append(cinder.post(
                f"/volumes/{volume_id}/action",
                json={"os-extend_volume_completion": {"error": error}},
            ))  # fmt: skip
