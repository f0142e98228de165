"""Real OpenStack services for tests, run from venvs of their own (a fresh machine has none:
each is made on first use, under a lock, and reused), on 127.0.0.1, in process groups of
their own, stopped by PID."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from tests.helpers import poll


def service_venv(venv: Path, packages: Sequence[str]) -> Path:
    """`venv` with `packages` installed, made once (parallel sessions wait on the lock)."""
    ready = venv / ".ready"
    if ready.exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *packages], check=True)
            ready.touch()
    return venv


def wait_http(url: str, what: str, proc: subprocess.Popen[bytes]) -> None:
    """Poll `url` until it answers (below 500); fail at once if the server exits."""

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            return httpx.get(url, timeout=2.0).status_code < 500
        except httpx.HTTPError:
            return False

    poll(answers, timeout=60.0, what=f"{what} ready at {url}")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started with start_new_session (its whole process group)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(15)
