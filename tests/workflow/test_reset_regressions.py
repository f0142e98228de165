"""Regressions: resets that raced an operation's steps (issue 8, defects 1-4).

Each test drives the real stack over HTTP and pauses the real driver at a failpoint, so it
also runs against the code before the operation framework (where each of them failed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import select
from temporalio.testing import ActivityEnvironment

from cinderflow.activities.keys import KeyActivities
from cinderflow.db import models
from cinderflow.db.engine import Database
from cinderflow.db.models import Encryption, KeyRecord, Snapshot, Volume, VolumeType
from cinderflow.drivers import qemu_img
from cinderflow.keys.service import KeyService, key_service
from tests.api.test_reset_status import assert_usage_is_a_recount, reset
from tests.helpers import (
    Background,
    ThreadStack,
    history_steps,
    hold_failpoint,
    poll,
    reset_in_progress,
    save_history,
    stack_settings,
    wait_failpoint,
    workflows_of,
)

GIB = 1 << 30


def _owned_rows(stack: ThreadStack, project: str) -> list[str]:
    db = Database(stack.settings.db_url)
    try:
        with db.read() as session:
            volumes = session.exec(
                select(Volume.id).where(Volume.project_id == project, Volume.workflow_id != None)  # noqa: E711
            ).all()
            snapshots = session.exec(
                select(Snapshot.id).where(
                    Snapshot.project_id == project,
                    Snapshot.workflow_id != None,  # noqa: E711
                )
            ).all()
            hold = getattr(models, "Hold", None)  # absent before the framework
            holds = session.exec(select(hold.resource_id)).all() if hold else []
            return [*volumes, *snapshots, *holds]
    finally:
        db.dispose()


def test_reset_during_an_extends_resize_keeps_the_backends_size(own_stack: ThreadStack) -> None:
    """Defect 1: the reset waits for the resize and commits its size."""
    api = own_stack.api()
    volume_id = api.available_volume(1)["id"]
    hold = hold_failpoint(own_stack.settings, "driver.extend_volume.after")
    try:
        grown = api.post(f"/volumes/{volume_id}/action", {"os-extend": {"new_size": 2}})
        assert grown.status_code == 202, grown.text
        # Resized on the backend; the driver's activity has not returned.
        wait_failpoint(own_stack.settings, "driver.extend_volume.after")
        address = own_stack.settings.temporal_address
        (workflow_id,) = poll(lambda: workflows_of(address, volume_id, "extend"))
        asking = Background(lambda: reset(api, volume_id, status="available"))
        poll(
            lambda: (
                asking.done
                or "waiting" in reset_in_progress(address, workflow_id)
                or "driver.reset_state" in history_steps(address, workflow_id)
            ),
            what="the reset answered, waiting, or at the driver",
        )
        # While the resize is still in flight, the reset must not have reached the driver.
        assert "driver.reset_state" not in history_steps(address, workflow_id)
    finally:
        hold.unlink()
    answer = asking.result()
    assert answer.status_code == 202, answer.text
    volume = api.wait_status(volume_id, "available")
    path = Path(own_stack.settings.backends[0].options["path"]) / f"volume-{volume_id}"
    assert volume["size"] * GIB == qemu_img.info(path)["virtual-size"]
    assert_usage_is_a_recount(api)
    address = own_stack.settings.temporal_address
    save_history(address, volume_id, "extend", "ExtendVolume-reset-during-resize")
    assert poll(lambda: not _owned_rows(own_stack, api.project), what="no owned rows") is True


def test_reset_during_a_cascade_delete_fails_no_snapshot(own_stack: ThreadStack) -> None:
    """Defect 2: the interrupted snapshot delete is abandoned, not reported as a failure."""
    api = own_stack.api()
    volume_id = api.available_volume(1)["id"]
    created = api.post("/snapshots", {"snapshot": {"volume_id": volume_id}})
    assert created.status_code == 202, created.text
    snapshot_id = created.json()["snapshot"]["id"]
    poll(lambda: api.get(f"/snapshots/{snapshot_id}").json()["snapshot"]["status"] == "available")
    hold = hold_failpoint(own_stack.settings, "driver.delete_snapshot.before")
    try:
        deleted = api.delete(f"/volumes/{volume_id}", params={"cascade": "true"})
        assert deleted.status_code == 202, deleted.text
        wait_failpoint(own_stack.settings, "driver.delete_snapshot.before")
        answer = reset(api, volume_id, status="available")
        assert answer.status_code == 202, answer.text
    finally:
        hold.unlink()
    assert (api.volume(volume_id) or {})["status"] == "available"
    poll(lambda: not _owned_rows(own_stack, api.project), what="no owned rows left")
    snapshot = api.get(f"/snapshots/{snapshot_id}").json()["snapshot"]
    assert snapshot["status"] in ("available", "error"), snapshot
    listed = api.get("/messages", version="3.5").json()["messages"]
    assert not [m for m in listed if "failed to delete" in m["user_message"]], listed
    snapshot_file = Path(own_stack.settings.backends[0].options["path"]) / f"snapshot-{snapshot_id}"
    if snapshot["status"] == "available":
        assert snapshot_file.is_file()
    address = own_stack.settings.temporal_address
    save_history(address, volume_id, "delete", "DeleteVolume-reset-during-cascade")


class RendezvousKeys(KeyService):
    """The real key service, with key creation made to overlap for two callers: both
    attempts of one activity read "no key yet" before either records one."""

    def __init__(self, inner: KeyService, parties: int) -> None:
        super().__init__(inner.manager)
        self.barrier = threading.Barrier(parties, timeout=30)

    def create(self, project_id: str, spec: Any) -> str:
        key_id = super().create(project_id, spec)
        self.barrier.wait()
        return key_id


def test_overlapping_key_creation_keeps_one_key(tmp_path: Path, databases: Any) -> None:
    """Defect 3: the losing attempt deletes its key without waiting on its own write lock."""
    settings = stack_settings(tmp_path, databases.new("sqlite"), "127.0.0.1:1")
    db = Database(settings.db_url)
    try:
        type_id = str(uuid.uuid4())
        with db.transaction() as session:
            session.add(VolumeType(id=type_id, name=f"enc-{type_id[:6]}"))
            session.flush()
            session.add(
                Encryption(
                    id=str(uuid.uuid4()),
                    volume_type_id=type_id,
                    provider="luks",
                    control_location="front-end",
                    cipher="aes-xts-plain64",
                    key_size=256,
                )
            )
            session.add(
                Volume(
                    id="v1",
                    project_id="p",
                    user_id="u",
                    size=1,
                    status="creating",
                    availability_zone="nova",
                    volume_type_id=type_id,
                    workflow_id="wf-1",
                )
            )
        keys = RendezvousKeys(key_service(settings, db), parties=2)
        activities = KeyActivities(db, keys)
        environment = ActivityEnvironment()
        environment.info = dataclasses.replace(environment.info, workflow_id="wf-1")
        with ThreadPoolExecutor(2) as pool:
            refs = list(
                pool.map(
                    lambda _: _run_activity(environment, activities.ensure_volume_key, "v1"),
                    range(2),
                )
            )
        with db.read() as session:
            recorded = session.get(Volume, "v1").encryption_key_id
            stored = session.exec(select(KeyRecord.id)).all()
        assert recorded is not None
        assert [ref.encryption_key_id for ref in refs] == [recorded, recorded]
        assert stored == [recorded]  # the losing attempt's key is gone, none leaked
    finally:
        db.dispose()


def _run_activity(environment: ActivityEnvironment, fn: Any, *args: Any) -> Any:
    return asyncio.run(environment.run(fn, *args))


def test_fifty_parallel_resets(own_stack: ThreadStack) -> None:
    """Defect 4: parallel resets are answered (202, 400 or 409), never 5xx, and none waits
    for ever: afterwards no workflow of the volume is running."""
    api = own_stack.api()
    volume_id = api.available_volume(1)["id"]
    targets = ["error" if i % 2 else "available" for i in range(50)]

    def ask(status: str) -> tuple[int, str]:
        with httpx.Client(base_url=api.base_url, timeout=120.0) as http:
            response = http.post(
                f"/v3/{api.project}/volumes/{volume_id}/action",
                json={"os-reset_status": {"status": status}},
                headers=api.headers(api.version),
            )
        if response.status_code < 400:
            return response.status_code, ""
        (fault,) = response.json().values()
        assert fault["code"] == response.status_code
        return response.status_code, fault["message"]

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(ask, targets))
    codes = Counter(code for code, _ in answers)
    assert not [a for a in answers if a[0] >= 500], answers
    assert codes[202] >= 1 and set(codes) <= {202, 400, 409}, answers
    assert (api.volume(volume_id) or {})["status"] in ("available", "error")
    address = own_stack.settings.temporal_address
    poll(
        lambda: workflows_of(address, volume_id, running=True) == [],
        what="no workflow left running",
    )
    assert _owned_rows(own_stack, api.project) == []
