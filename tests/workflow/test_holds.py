"""An operation that reads a resource holds it until it has read it (issue 8, defect 6).

A snapshot or a clone copies its source on the backend. Until that copy is done, an extend of the
source is refused (409, naming the reader) and so is a delete (400), so the size recorded for
the copy is always the size the backend copied, even when the copy starts much later (Temporal
was down and the sweeper started it).
"""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from cinderflow.db.engine import Database
from cinderflow.db.models import Hold
from cinderflow.drivers import qemu_img
from cinderflow.temporal.devserver import DevServer, free_port
from tests.conftest import Databases
from tests.helpers import (
    Api,
    ThreadStack,
    assert_fault,
    hold_failpoint,
    poll,
    stack_settings,
    wait_failpoint,
)

GIB = 1 << 30


def _extend(api: Api, volume_id: str, size: int) -> object:
    return api.post(f"/volumes/{volume_id}/action", {"os-extend": {"new_size": size}})


def _snapshot(api: Api, volume_id: str) -> str:
    created = api.post("/snapshots", {"snapshot": {"volume_id": volume_id}})
    assert created.status_code == 202, created.text
    return created.json()["snapshot"]["id"]


def _snapshot_status(api: Api, snapshot_id: str) -> dict:
    return api.get(f"/snapshots/{snapshot_id}").json()["snapshot"]


def _holds(url: str) -> list[Hold]:
    db = Database(url)
    try:
        with db.read() as session:
            return list(session.exec(select(Hold)))
    finally:
        db.dispose()


def _backend(stack: ThreadStack) -> Path:
    return Path(stack.settings.backends[0].options["path"])


def test_a_snapshot_holds_its_volume_until_copied(own_stack: ThreadStack) -> None:
    api = own_stack.api()
    volume_id = api.available_volume(1)["id"]
    hold = hold_failpoint(own_stack.settings, "driver.create_snapshot.before")
    try:
        snapshot_id = _snapshot(api, volume_id)
        wait_failpoint(own_stack.settings, "driver.create_snapshot.before")
        assert_fault(
            _extend(api, volume_id, 2), 409, f"snapshot {snapshot_id} is being created from it"
        )
        assert_fault(api.delete(f"/volumes/{volume_id}"), 400, "Invalid volume")
        (held,) = _holds(own_stack.settings.db_url)
        assert (held.resource_id, held.holder_id) == (volume_id, snapshot_id)
    finally:
        hold.unlink()
    poll(lambda: _snapshot_status(api, snapshot_id)["status"] == "available")
    assert _holds(own_stack.settings.db_url) == []
    snapshot = _snapshot_status(api, snapshot_id)
    copied = qemu_img.info(_backend(own_stack) / f"snapshot-{snapshot_id}")["virtual-size"]
    assert snapshot["size"] * GIB == copied
    assert _extend(api, volume_id, 2).status_code == 202  # the hold is gone with the copy
    assert api.wait_status(volume_id, "available")["size"] == 2


def test_a_clone_holds_its_source_until_copied(own_stack: ThreadStack) -> None:
    api = own_stack.api()
    source_id = api.available_volume(1)["id"]
    hold = hold_failpoint(own_stack.settings, "driver.create_cloned_volume.before")
    try:
        clone_id = api.create_volume(source_volid=source_id)["id"]
        wait_failpoint(own_stack.settings, "driver.create_cloned_volume.before")
        assert_fault(_extend(api, source_id, 3), 409, f"volume {clone_id} is being cloned from it")
        assert_fault(api.delete(f"/volumes/{source_id}"), 400, "is being cloned from it")
    finally:
        hold.unlink()
    clone = api.wait_status(clone_id, "available")
    assert (
        clone["size"] * GIB
        == qemu_img.info(_backend(own_stack) / f"volume-{clone_id}")["virtual-size"]
    )
    assert _holds(own_stack.settings.db_url) == []
    assert _extend(api, source_id, 3).status_code == 202


def test_a_hold_lasts_while_temporal_is_down(
    tmp_path: Path, temporal: DevServer, databases: Databases
) -> None:
    """The snapshot is accepted while Temporal is unreachable and waits for the sweeper; the
    extend asked for meanwhile is refused, so the copy made later has the recorded size."""
    url = databases.new("sqlite")
    online = stack_settings(tmp_path / "online", url, temporal.address)
    stack = ThreadStack(online).start()
    offline_api: ThreadStack | None = None
    try:
        api = stack.api()
        volume_id = api.available_volume(1)["id"]
        offline = online.model_copy(
            update={"temporal_address": f"127.0.0.1:{free_port()}", "api_port": free_port()}
        )
        offline_api = ThreadStack(offline, worker=False).start()
        cut_off = offline_api.api(project=api.project)
        snapshot_id = _snapshot(cut_off, volume_id)  # recorded; its workflow waits in the outbox
        assert_fault(
            _extend(cut_off, volume_id, 2), 409, f"snapshot {snapshot_id} is being created from it"
        )
        assert_fault(_extend(api, volume_id, 2), 409, "is being created from it")
        poll(lambda: _snapshot_status(api, snapshot_id)["status"] == "available", timeout=60)
        snapshot = _snapshot_status(api, snapshot_id)
        copied = qemu_img.info(_backend(stack) / f"snapshot-{snapshot_id}")["virtual-size"]
        assert (snapshot["size"], copied) == (1, GIB)
        assert _holds(url) == []
    finally:
        if offline_api:
            offline_api.stop()
        stack.stop()
