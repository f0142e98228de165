"""The invariant: no crash leaves a volume `creating`/`deleting` without a workflow to finish it.

Each test stops a real process at a named failpoint, SIGKILLs it, restarts it, and checks that
the operation completes exactly once (one backend file per live volume, none after delete).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from cinderflow.db.engine import Database
from cinderflow.db.models import OutboxEntry, Volume
from cinderflow.settings import Settings
from cinderflow.temporal.devserver import DevServer, free_port
from tests.conftest import Databases
from tests.helpers import (
    Api,
    Process,
    ThreadStack,
    assert_fault,
    history_steps,
    hold_failpoint,
    poll,
    stack_settings,
    wait_backends_reported,
    wait_failpoint,
    workflows_of,
)

pytestmark = pytest.mark.slow


@dataclass
class Split:
    """API in a thread, worker as a separate `cinderflow worker` process."""

    settings: Settings
    api_stack: ThreadStack
    worker: Process
    db: Database

    @property
    def api(self) -> Api:
        return self.api_stack.api()

    def files(self) -> set[str]:
        root = Path(self.settings.backends[0].options["path"])
        return {p.name for p in root.iterdir() if not p.name.startswith(".probe-")}

    def hold(self, point: str) -> Path:
        return hold_failpoint(self.settings, point)

    def wait_reached(self, point: str) -> None:
        wait_failpoint(self.settings, point)


@pytest.fixture
def split(tmp_path: Path, temporal: DevServer, databases: Databases) -> Iterator[Split]:
    settings = stack_settings(tmp_path, databases.new("sqlite"), temporal.address)
    db = Database(settings.db_url)
    api_stack = ThreadStack(settings, worker=False).start()
    worker = Process(settings, "worker", log=tmp_path / "worker.log").start()
    running = Split(settings, api_stack, worker, db)
    wait_backends_reported(settings.db_url)
    yield running
    worker.stop()
    api_stack.stop()
    db.dispose()


@pytest.mark.parametrize("point", ["before", "after"])
def test_worker_killed_in_create_driver_call(split: Split, point: str) -> None:
    failpoint = f"driver.create_volume.{point}"
    hold = split.hold(failpoint)
    volume_id = split.api.create_volume()["id"]
    split.wait_reached(failpoint)

    split.worker.kill()
    hold.unlink()
    assert (split.api.volume(volume_id) or {})["status"] == "creating"
    split.worker.start()

    split.api.wait_status(volume_id, "available", timeout=60)
    assert split.files() == {f"volume-{volume_id}"}


def test_worker_killed_in_delete_driver_call(split: Split) -> None:
    volume_id = split.api.available_volume()["id"]
    hold = split.hold("driver.delete_volume.after")
    assert split.api.delete(f"/volumes/{volume_id}").status_code == 202
    split.wait_reached("driver.delete_volume.after")

    split.worker.kill()
    hold.unlink()
    assert (split.api.volume(volume_id) or {})["status"] == "deleting"
    split.worker.start()

    split.api.wait_gone(volume_id, timeout=60)
    assert split.files() == set()


def test_api_killed_between_commit_and_workflow_start(
    tmp_path: Path, temporal: DevServer, databases: Databases
) -> None:
    settings = stack_settings(tmp_path, databases.new("sqlite"), temporal.address)
    db = Database(settings.db_url)
    worker = ThreadStack(settings, api=False).start()
    api = Process(settings, "api", log=tmp_path / "api.log").start()
    try:
        api.wait_listening(settings.api_host, settings.api_port)
        hold = settings.failpoint_dir / "api.create_volume.committed.hold"
        hold.touch()
        client = Api(f"http://{settings.api_host}:{settings.api_port}")
        outcome: list[object] = []
        request = threading.Thread(target=lambda: outcome.append(_post_volume(client)), daemon=True)
        request.start()
        poll((settings.failpoint_dir / "api.create_volume.committed.reached").exists)

        api.kill()
        hold.unlink()
        request.join(10)
        assert outcome and isinstance(outcome[0], httpx.HTTPError)

        with db.read() as session:
            (volume,) = session.exec(select(Volume)).all()
            assert volume.status == "creating"
            assert session.get(OutboxEntry, volume.workflow_id) is not None

        def finished() -> bool:
            with db.read() as session:
                row = session.get(Volume, volume.id)
                return row is not None and row.status == "available"

        poll(finished, timeout=60, what="sweeper-started workflow to finish")
        with db.read() as session:
            assert session.exec(select(OutboxEntry)).all() == []
    finally:
        api.stop()
        worker.stop()
        db.dispose()


def _post_volume(client: Api) -> object:
    try:
        return client.post("/volumes", {"volume": {"size": 1}})
    except httpx.HTTPError as error:
        return error


def test_temporal_unreachable_at_request_time(
    tmp_path: Path, temporal: DevServer, databases: Databases
) -> None:
    """The API answers 202 from the database alone; the worker's sweeper starts it later."""
    url = databases.new("sqlite")
    offline = stack_settings(tmp_path / "api", url, f"127.0.0.1:{free_port()}")
    api_stack = ThreadStack(offline, worker=False).start()
    worker: ThreadStack | None = None
    try:
        api = api_stack.api()
        volume_id = api.create_volume()["id"]
        assert (api.volume(volume_id) or {})["status"] == "creating"
        online = stack_settings(
            tmp_path / "worker",
            url,
            temporal.address,
            host=offline.host,
            control_task_queue=offline.control_task_queue,
        )
        worker = ThreadStack(online, api=False).start()
        api.wait_status(volume_id, "available", timeout=60)

        # Started late by the sweeper, an extend leaves out the plan the API read at request
        # time (it may be stale by now) and reads it afresh, fenced, as its first step.
        extended = api.post(f"/volumes/{volume_id}/action", {"os-extend": {"new_size": 2}})
        assert extended.status_code == 202, extended.text
        poll(lambda: (api.volume(volume_id) or {}).get("size") == 2, timeout=60, what="extend")
        assert api.wait_status(volume_id, "available")["size"] == 2
        (workflow_id,) = workflows_of(temporal.address, volume_id, "extend")
        assert history_steps(temporal.address, workflow_id)[0] == "scheduler.plan_extend"
    finally:
        if worker:
            worker.stop()
        api_stack.stop()


def test_temporal_restarted_mid_operation(tmp_path: Path, databases: Databases) -> None:
    """A Temporal server restart (same SQLite file) while a driver call is in flight."""
    server = DevServer(
        port=free_port(),
        ui_port=None,
        db_file=tmp_path / "temporal.sqlite",
        log_file=tmp_path / "temporal.log",
    )
    server.start()
    settings = stack_settings(tmp_path, databases.new("sqlite"), server.address)
    stack = ThreadStack(settings).start()
    try:
        api = stack.api()
        hold = settings.failpoint_dir / "driver.create_volume.after.hold"
        hold.touch()
        volume_id = api.create_volume()["id"]
        poll((settings.failpoint_dir / "driver.create_volume.after.reached").exists)
        server.stop()
        hold.unlink()
        server.start()
        api.wait_status(volume_id, "available", timeout=90)
        assert {p.name for p in (tmp_path / "volumes").glob("volume-*")} == {f"volume-{volume_id}"}
    finally:
        stack.stop()
        server.stop()


def test_worker_killed_mid_copy_leaves_no_temporary_file(split: Split) -> None:
    """A clone's copy is cut by SIGKILL with its partial file on disk; the retry removes it,
    copies again and publishes the clone: nothing but the two volumes is left."""
    api = split.api
    source_id = api.available_volume(1)["id"]
    root = Path(split.settings.backends[0].options["path"])
    data = os.urandom(32 << 20)
    with open(root / f"volume-{source_id}", "r+b") as handle:
        handle.write(data)
    hold = split.hold("driver.create_cloned_volume.progress")
    clone_id = api.create_volume(source_volid=source_id)["id"]
    split.wait_reached("driver.create_cloned_volume.progress")
    assert any(name.endswith(".partial") for name in _all_files(root)), _all_files(root)

    split.worker.kill()
    hold.unlink()
    split.worker.start()

    api.wait_status(clone_id, "available", timeout=60)
    assert [name for name in _all_files(root) if "partial" in name] == []
    assert split.files() == {f"volume-{source_id}", f"volume-{clone_id}"}
    with open(root / f"volume-{clone_id}", "rb") as handle:
        assert handle.read(len(data)) == data


def _all_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_file())


def test_temporal_killed_answers_503(tmp_path: Path, databases: Databases) -> None:
    """DELETE /attachments and os-reset_status while Temporal is SIGKILLed: a 503 Cinder fault,
    never a 500; once Temporal is back, what was recorded is carried out."""
    server = DevServer(
        port=free_port(),
        ui_port=None,
        db_file=tmp_path / "temporal.sqlite",
        log_file=tmp_path / "temporal.log",
    )
    server.start()
    settings = stack_settings(
        tmp_path, databases.new("sqlite"), server.address, attachment_timeout=10.0
    )
    stack = ThreadStack(settings).start()
    try:
        api = stack.api()
        volume_id = api.available_volume()["id"]
        body = {"volume_uuid": volume_id, "connector": {"host": "c1", "initiator": "iqn.c1"}}
        attached = api.post("/attachments", {"attachment": body})
        assert attached.status_code == 200, attached.text
        attachment_id = attached.json()["attachment"]["id"]
        other_id = api.available_volume()["id"]

        server.kill()
        detached = api.delete(f"/attachments/{attachment_id}")
        assert_fault(detached, 503, "unavailable")
        reset = api.post(f"/volumes/{other_id}/action", {"os-reset_status": {"status": "error"}})
        assert_fault(reset, 503, "unavailable")

        server.start()
        poll(
            lambda: api.get(f"/attachments/{attachment_id}").status_code == 404,
            timeout=60,
            what="the recorded detach carried out",
        )
        api.wait_status(other_id, "error", timeout=60)
    finally:
        stack.stop()
        server.stop()
