"""Test helpers: polling with a deadline, a Cinder HTTP client, and a real in-thread stack."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr
from sqlmodel import Session, select

from cinderflow.db.engine import Database
from cinderflow.db.models import Service, Volume, VolumeType
from cinderflow.serve import serve
from cinderflow.settings import BackendConfig, Settings
from cinderflow.temporal.devserver import free_port, port_open, temporal_binary

T = TypeVar("T")

ADMIN = "admin"
DEFAULT_TIMEOUT = 30.0


def poll(
    check: Callable[[], T], *, timeout: float = DEFAULT_TIMEOUT, interval: float = 0.1, what=""
) -> T:
    """Call `check` until it returns something truthy; fail with the last value at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last={last!r}")


async def poll_async(
    check: Callable[[], Any], *, timeout: float = DEFAULT_TIMEOUT, interval: float = 0.05, what=""
) -> Any:
    """`poll` for async tests: `check` returns a value or an awaitable of one."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last={last!r}")


class Background:
    """A blocking call (a request the server holds) run in a thread, so that the test can act
    while it waits; `result()` joins it."""

    def __init__(self, call: Callable[[], T]) -> None:
        self._results: list[T] = []
        self._thread = threading.Thread(target=lambda: self._results.append(call()), daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        return bool(self._results)

    def result(self, timeout: float = 60.0) -> Any:
        self._thread.join(timeout)
        assert self._results, f"the call did not return within {timeout}s"
        return self._results[0]


def hold_failpoint(settings: Settings, point: str) -> Path:
    """Make processes pause at failpoint `point` until the returned file is removed."""
    hold = settings.failpoint_dir / f"{point}.hold"
    hold.touch()
    return hold


def step_failpoint(settings: Settings, point: str) -> None:
    """Let the process held at `point` go on, to hold again when it next passes."""
    (settings.failpoint_dir / f"{point}.hold").write_text(uuid.uuid4().hex)


def wait_failpoint(settings: Settings, point: str) -> None:
    """Wait until a process pauses at `point` (and forget that it did, for the next time)."""
    reached = settings.failpoint_dir / f"{point}.reached"
    poll(reached.exists, what=f"failpoint {point}")
    reached.unlink()


def wait_backends_reported(database_url: str, count: int = 1) -> None:
    """Wait until `count` backend workers have reported stats (the scheduler can place volumes)."""
    db = Database(database_url)
    try:

        def reported() -> bool:
            with db.read() as session:
                backends = session.exec(select(Service).where(Service.binary == "cinder-volume"))
                return len(backends.all()) >= count

        poll(reported, what=f"{count} backend(s) reporting")
    finally:
        db.dispose()


def insert_volume(session: Session, ident: str, **fields: Any) -> Volume:
    """A bare volume row of the default type (for tests below the API)."""
    values: dict[str, Any] = {
        "project_id": "p",
        "user_id": "u",
        "size": 1,
        "status": "available",
        "availability_zone": "nova",
        **fields,
    }
    if "volume_type_id" not in values:
        values["volume_type_id"] = session.exec(select(VolumeType.id)).one()
    volume = Volume(id=ident, **values)
    session.add(volume)
    return volume


def temporal_cli(address: str, *args: str) -> str:
    """Run the `temporal` CLI against `address`; its stdout."""
    done = subprocess.run(
        [temporal_binary(), *args, "--address", address], capture_output=True, text=True, check=True
    )
    return done.stdout


HISTORIES = Path(__file__).parent / "histories"
RECORD_HISTORIES = os.environ.get("CINDERFLOW_RECORD_HISTORIES") == "1"
"""Set to 1 to (re)write tests/histories/ from the end-to-end tests that save a history."""
HISTORY_SUFFIX = os.environ.get("CINDERFLOW_HISTORY_SUFFIX", "")
"""Appended to each recorded name (`-planned`: ExtendVolume-offline-planned.json): a new path
through a changed workflow is added beside the old histories, which must keep replaying."""


def workflows_of(
    address: str, volume_id: str, operation: str | None = None, *, running: bool = False
) -> list[str]:
    """Ids of the workflows that ran (or, `running`, still run) on a volume, oldest first."""
    query = f"VolumeId='{volume_id}'" + (f" AND Operation='{operation}'" if operation else "")
    if running:
        query += " AND ExecutionStatus='Running'"
    listed = temporal_cli(address, "workflow", "list", "-o", "json", "--query", query)
    found = json.loads(listed or "[]")
    return [w["execution"]["workflowId"] for w in sorted(found, key=lambda w: w["startTime"])]


def history_steps(address: str, workflow_id: str) -> list[str]:
    """Activity types the workflow ran, in order: scheduled activities and local activities
    (recorded as markers whose `data` names the activity type)."""
    shown = temporal_cli(address, "workflow", "show", "-w", workflow_id, "-o", "json")
    steps = []
    for event in json.loads(shown)["events"]:
        if "activityTaskScheduledEventAttributes" in event:
            steps.append(event["activityTaskScheduledEventAttributes"]["activityType"]["name"])
        marker = event.get("markerRecordedEventAttributes")
        if marker and marker.get("markerName") == "core_local_activity":
            (payload,) = marker["details"]["data"]["payloads"]
            steps.append(json.loads(base64.b64decode(payload["data"]))["activity_type"])
    return steps


def operation_progress(address: str, workflow_id: str) -> dict[str, Any] | None:
    """The operation's `progress` query answer (workflows/operation.py), or None if the
    workflow has no such query."""
    try:
        shown = temporal_cli(
            address, "workflow", "query", "-w", workflow_id, "--type", "progress", "-o", "json"
        )
    except subprocess.CalledProcessError:
        return None
    (state,) = json.loads(shown)["queryResult"]
    return state


def reset_in_progress(address: str, workflow_id: str) -> str:
    """What a reset of the operation is doing, in its words ("" if none is)."""
    return (operation_progress(address, workflow_id) or {}).get("reset") or ""


def save_history(address: str, volume_id: str, operation: str, name: str) -> None:
    """Record the history of the volume's (last) `operation` workflow as
    tests/histories/<name>.json, for the replay test, when CINDERFLOW_RECORD_HISTORIES=1."""
    if not RECORD_HISTORIES:
        return
    workflow_id = poll(lambda: workflows_of(address, volume_id, operation), what=operation)[-1]

    def closed() -> bool:
        shown = temporal_cli(address, "workflow", "describe", "-w", workflow_id, "-o", "json")
        return json.loads(shown)["workflowExecutionInfo"]["status"] != (
            "WORKFLOW_EXECUTION_STATUS_RUNNING"
        )

    poll(closed, what=f"{workflow_id} closed")
    HISTORIES.mkdir(exist_ok=True)
    shown = temporal_cli(address, "workflow", "show", "-w", workflow_id, "-o", "json")
    (HISTORIES / f"{name}{HISTORY_SUFFIX}.json").write_text(shown)


def new_project() -> str:
    return uuid.uuid4().hex


class Api:
    """A Cinder v3 client over real HTTP, in noauth mode."""

    def __init__(
        self,
        base_url: str,
        *,
        user: str = ADMIN,
        project: str | None = None,
        version: str | None = "3.71",
        roles: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.user = user
        self.project = project or new_project()
        self.version = version
        self.roles = roles
        self.http = httpx.Client(base_url=self.base_url, timeout=30.0)

    def as_user(self, user: str, project: str | None = None, roles: str | None = None) -> Api:
        return Api(
            self.base_url,
            user=user,
            project=project or self.project,
            version=self.version,
            roles=roles,
        )

    def headers(self, version: str | None) -> dict[str, str]:
        headers = {"X-Auth-Token": f"{self.user}:{self.project}"}
        if version:
            headers["OpenStack-API-Version"] = f"volume {version}"
        if self.roles is not None:
            headers["X-Roles"] = self.roles
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: str | bytes | None = None,
        version: str | None = "default",
        headers: dict[str, str] | None = None,
        project_in_url: bool = True,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        ver = self.version if version == "default" else version
        url = f"/v3/{self.project}{path}" if project_in_url else f"/v3{path}"
        all_headers = {**self.headers(ver), **(headers or {})}
        return self.http.request(
            method, url, json=json, content=content, headers=all_headers, params=params
        )

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return self.request("POST", path, json=body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return self.request("PUT", path, json=body, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    # Volumes ------------------------------------------------------------------------------

    def create_volume(self, size: int = 1, **fields: Any) -> dict[str, Any]:
        response = self.post("/volumes", {"volume": {"size": size, **fields}})
        assert response.status_code == 202, response.text
        return response.json()["volume"]

    def volume(self, volume_id: str) -> dict[str, Any] | None:
        response = self.get(f"/volumes/{volume_id}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return response.json()["volume"]

    def wait_status(self, volume_id: str, *statuses: str, timeout: float = DEFAULT_TIMEOUT):
        seen: list[Any] = [None]

        def reached() -> dict[str, Any] | None:
            seen[0] = self.volume(volume_id)
            return seen[0] if seen[0] and seen[0]["status"] in statuses else None

        try:
            return poll(reached, timeout=timeout, what=f"volume {volume_id} in {statuses}")
        except AssertionError as error:
            raise AssertionError(f"{error}; volume last seen as {seen[0]!r}") from None

    def wait_gone(self, volume_id: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        poll(lambda: self.volume(volume_id) is None, timeout=timeout, what=f"{volume_id} gone")

    def available_volume(self, size: int = 1, **fields: Any) -> dict[str, Any]:
        return self.wait_status(self.create_volume(size, **fields)["id"], "available")


def assert_fault(response: httpx.Response, code: int, fragment: str = "") -> str:
    """The response is a Cinder fault with `code` whose message contains `fragment`."""
    assert response.status_code == code, f"{response.status_code}: {response.text}"
    body = response.json()
    assert len(body) == 1, body
    (fault,) = body.values()
    assert fault["code"] == code, body
    assert fragment in fault["message"], f"{fragment!r} not in {fault['message']!r}"
    return fault["message"]


def stack_settings(
    tmp: Path, database_url: str, temporal_address: str, **overrides: Any
) -> Settings:
    """Settings isolating one stack: own host (so own backend queues), control queue, data."""
    tag = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "data_dir": tmp,
        "database_url": database_url,
        "temporal_address": temporal_address,
        "host": f"test-{tag}",
        "control_task_queue": f"control-{tag}",
        "api_port": free_port(),
        "backends": [
            BackendConfig(
                name="file", options={"path": str(tmp / "volumes"), "luks_iter_time_ms": 10}
            )
        ],
        "driver_heartbeat_timeout": 2.0,
        "driver_max_attempts": 3,
        "outbox_sweep_interval": 0.5,
        "outbox_grace": 1.0,
        "stats_interval": 1.0,
        "failpoint_dir": tmp / "failpoints",
    }
    values.update(overrides)
    (tmp / "failpoints").mkdir(parents=True, exist_ok=True)
    return Settings(**values)


class ThreadStack:
    """The real API and/or worker (cinderflow.serve) on an event loop in a background thread."""

    def __init__(self, settings: Settings, *, api: bool = True, worker: bool = True) -> None:
        self.settings = settings
        self.api_enabled = api
        self.worker_enabled = worker
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="stack")

    @property
    def url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def _main(self) -> None:
        async def body() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve(
                self.settings,
                api=self.api_enabled,
                worker=self.worker_enabled,
                stop=self._stop,
                on_ready=self._ready.set,
            )

        try:
            asyncio.run(body())
        except BaseException as error:
            self._error = error
            self._ready.set()

    def start(self) -> ThreadStack:
        self._thread.start()
        if not self._ready.wait(60) or self._error:
            raise RuntimeError(f"stack did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        assert not self._thread.is_alive(), "stack did not stop"

    def api(self, **kw: Any) -> Api:
        return Api(self.url, **kw)


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings as CINDERFLOW_* variables, for `cinderflow` subprocesses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CINDERFLOW_")}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        secret = getattr(settings, name)
        if isinstance(secret, SecretStr):  # dumped masked
            value = secret.get_secret_value()
        env[f"CINDERFLOW_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


class Process:
    """A `cinderflow` subprocess (API or worker) we can SIGKILL and restart."""

    def __init__(self, settings: Settings, *args: str, log: Path) -> None:
        self.args = args
        self.env = settings_env(settings)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cinderflow", *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def wait_listening(self, host: str, port: int, timeout: float = 30.0) -> None:
        def up() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.log}"
            return port_open(host, port)

        poll(up, timeout=timeout, what=f"{self.args} listening on {port}")


def available_snapshot(api: Api, volume_id: str) -> dict[str, Any]:
    """A new snapshot of the volume, once it is available."""
    snap = api.post("/snapshots", {"snapshot": {"volume_id": volume_id}}).json()["snapshot"]
    return poll(
        lambda: (
            (s := api.get(f"/snapshots/{snap['id']}").json()["snapshot"])["status"] == "available"
            and s
        ),
        what="snapshot available",
    )


def assert_usage_is_recount(stack: ThreadStack, *projects: str) -> None:
    """Each project's counted usage equals a recount of its rows, and nothing is reserved."""
    from cinderflow.quota.engine import counted_usage, reserved, usage

    db = Database(stack.settings.db_url)
    try:
        with db.read() as session:
            for project in projects:
                assert usage(session, stack.settings, project) == counted_usage(
                    session, stack.settings, project
                )
                assert reserved(session, project) == {}
    finally:
        db.dispose()
