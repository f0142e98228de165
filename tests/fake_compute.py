"""A compute service we cannot run here, as real HTTP, plus a real QEMU guest holding a volume.

`FakeCompute` answers `POST /os-server-external-events` like Nova. On a `volume-extended` event,
depending on `mode`, it reads `extend_new_size` from the volume's metadata through the Cinder
API, resizes the guest's disk through QMP (`block_resize`, as Nova's libvirt driver does), and
calls `os-extend_volume_completion`; or answers `error: true`; or stays silent; or refuses the
event. It answers the event first and completes afterwards, as Nova does.

`PUT /servers/{id}/os-volume_attachments/{old}` with a new volume id is Nova's swap volume, as
a migration of an attached volume asks for it. The compute does what Nova's compute does with
new-style attachments: it creates and connects an attachment of the new volume, mirrors the
guest's disk into the new file through QMP (`blockdev-mirror`, then `block-job-complete`, as
libvirt's block copy), completes the new attachment, calls `os-migrate_volume_completion` on
the old volume and deletes the old attachment. Mode `error` answers the completion with
`error: true` without copying; `silent` accepts the swap and does nothing.
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
CONNECTOR = {"initiator": "iqn.2026-11.test:compute", "host": "compute1", "ip": "127.0.0.1"}
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
                while "event" in reply:  # asynchronous events (a block job's) come in between
                    reply = json.loads(stream.readline())
            return reply

    def disk_file(self) -> str:
        """The file behind the guest's disk now (its device's root node's file)."""
        (device,) = [d for d in self.qmp("query-block")["return"] if d.get("inserted")]
        return device["inserted"]["file"]

    def mirror_to(self, volume_file: str) -> None:
        """Move the guest's disk to `volume_file` while it runs: a full mirror, completed once
        it is in sync, then the old nodes closed (their locks released)."""
        for args in ({"driver": "file", "node-name": "f1", "filename": volume_file},
                     {"driver": "raw", "node-name": "r1", "file": "f1"}):  # fmt: skip
            assert "return" in self.qmp("blockdev-add", **args), args
        reply = self.qmp("blockdev-mirror", **{"job-id": "swap", "device": "r0", "target": "r1",
                                               "sync": "full"})  # fmt: skip
        assert "return" in reply, reply

        def job() -> dict[str, Any] | None:
            jobs = self.qmp("query-block-jobs")["return"]
            return jobs[0] if jobs else None

        poll(lambda: (j := job()) and j.get("ready"), timeout=60, what="mirror in sync")
        assert "return" in self.qmp("block-job-complete", device="swap")
        poll(lambda: job() is None, timeout=60, what="mirror completed")
        for node in ("r0", "f0"):
            assert "return" in self.qmp("blockdev-del", **{"node-name": node}), node

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
        self.swaps: list[tuple[str, str, str]] = []
        """(server, old volume, new volume) of each swap asked for"""
        self.swapped: list[httpx.Response] = []
        """os-migrate_volume_completion responses"""
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
        self.swaps.clear()
        self.swapped.clear()
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

            def do_PUT(self) -> None:
                parts = self.path.strip("/").split("/")
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if len(parts) != 5 or parts[1] != "servers" or parts[3] != "os-volume_attachments":
                    self._answer(404, {"itemNotFound": {"code": 404, "message": "no such path"}})
                    return
                server, old = parts[2], parts[4]
                new = body["volumeAttachment"]["volumeId"]
                compute.swaps.append((server, old, new))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                threading.Thread(target=compute._swap, args=(server, old, new), daemon=True).start()

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
            "X-Auth-Token": f"nova:{self.project}", "X-Roles": "member,reader,service",
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

    def _swap(self, server: str, old: str, new: str) -> None:
        """Nova's swap volume with new-style attachments (see the module's docstring)."""
        if self.mode == "silent":
            return
        with self._cinder() as cinder:

            def completion(error: bool) -> None:
                body = {"os-migrate_volume_completion": {"new_volume": new, "error": error}}
                self.swapped.append(cinder.post(f"/volumes/{old}/action", json=body))

            if self.mode == "error":
                completion(True)
                return
            (old_attachment,) = [
                a
                for a in cinder.get("/attachments/detail").json()["attachments"]
                if a["volume_id"] == old and a["instance"] == server
            ]
            reserve = {"attachment": {"volume_uuid": new, "instance_uuid": server}}
            created = _ok(cinder.post("/attachments", json=reserve))["attachment"]
            connect = {"attachment": {"connector": CONNECTOR}}
            updated = _ok(cinder.put(f"/attachments/{created['id']}", json=connect))
            path = updated["attachment"]["connection_info"]["data"]["device_path"]
            guest = self.guests.get(old)
            if guest is not None:
                guest.mirror_to(path)
                self.guests[new] = guest
            cinder.post(f"/attachments/{created['id']}/action", json={"os-complete": None})
            completion(False)
            cinder.delete(f"/attachments/{old_attachment['id']}")


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code < 300, f"{response.request.method} {response.url}: {response.text}"
    return response.json()
