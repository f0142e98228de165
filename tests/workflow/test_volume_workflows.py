"""Create/delete workflows: failure paths, ownership fencing, and what operators see in Temporal."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from sqlmodel import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from cinderflow.activities.fencing import LOST_OWNERSHIP
from cinderflow.activities.operation import OperationActivities
from cinderflow.db.engine import Database
from cinderflow.db.models import Service, Volume
from cinderflow.payloads import FinalWrite
from cinderflow.temporal.devserver import DevServer, free_port
from tests.conftest import Databases
from tests.helpers import (
    Process,
    ThreadStack,
    insert_volume,
    poll,
    save_history,
    stack_settings,
    temporal_cli,
    wait_backends_reported,
)


def temporal_list(address: str, query: str) -> list[dict]:
    return json.loads(
        temporal_cli(address, "workflow", "list", "--query", query, "-o", "json") or "[]"
    )


def test_workflows_are_findable_by_search_attributes(
    stack: ThreadStack, temporal: DevServer
) -> None:
    api = stack.api()
    volume_id = api.available_volume(name="findme")["id"]
    assert api.delete(f"/volumes/{volume_id}").status_code == 202
    api.wait_gone(volume_id)

    def both() -> list[dict]:
        found = temporal_list(temporal.address, f"VolumeId='{volume_id}'")
        return found if len(found) == 2 else []

    found = poll(both, what="create and delete workflows in visibility")
    assert {w["type"]["name"] for w in found} == {"CreateVolume", "DeleteVolume"}
    assert all(w["status"] == "WORKFLOW_EXECUTION_STATUS_COMPLETED" for w in found)
    (create,) = temporal_list(
        temporal.address,
        f"VolumeId='{volume_id}' AND Operation='create' AND ProjectId='{api.project}'",
    )
    assert create["execution"]["workflowId"].startswith(f"volume-{volume_id}-create-")
    described = temporal_cli(
        temporal.address, "workflow", "describe", "-w", create["execution"]["workflowId"]
    )
    assert "create 1 GiB volume findme" in described
    save_history(temporal.address, volume_id, "create", "CreateVolume-available")
    save_history(temporal.address, volume_id, "delete", "DeleteVolume-deleted")


def test_driver_failure_makes_the_volume_error(own_stack: ThreadStack) -> None:
    api = own_stack.api()
    volumes = Path(own_stack.settings.backends[0].options["path"])
    hold = own_stack.settings.failpoint_dir / "driver.create_volume.before.hold"
    hold.touch()
    volume_id = api.create_volume()["id"]
    poll((own_stack.settings.failpoint_dir / "driver.create_volume.before.reached").exists)
    shutil.rmtree(volumes)  # the backend directory disappears under the driver
    hold.unlink()
    volume = api.wait_status(volume_id, "error", "available")
    assert volume["status"] == "error"
    save_history(own_stack.settings.temporal_address, volume_id, "create", "CreateVolume-error")
    assert api.delete(f"/volumes/{volume_id}").status_code == 202  # error volumes are deletable
    volumes.mkdir()
    api.wait_gone(volume_id)


def test_no_valid_backend_makes_the_volume_error(own_stack: ThreadStack) -> None:
    api = own_stack.api()
    # the backend's first report creates its service row (enabled): disable it after that
    wait_backends_reported(own_stack.settings.db_url)
    db = Database(own_stack.settings.db_url)
    try:
        with db.transaction() as session:
            for service in session.exec(select(Service)):
                service.disabled = True
        volume = api.wait_status(api.create_volume()["id"], "error", "available")
        assert volume["status"] == "error"
        assert volume["os-vol-host-attr:host"] is None
        address = own_stack.settings.temporal_address
        save_history(address, volume["id"], "create", "CreateVolume-no-backend")
        assert api.delete(f"/volumes/{volume['id']}").status_code == 202
        api.wait_gone(volume["id"])  # never placed: nothing to delete on a backend
    finally:
        db.dispose()


def test_delete_failure_makes_error_deleting(own_stack: ThreadStack) -> None:
    api = own_stack.api()
    volumes = Path(own_stack.settings.backends[0].options["path"])
    volume_id = api.available_volume()["id"]
    moved = volumes.with_name("moved")
    volumes.rename(moved)
    try:
        assert api.delete(f"/volumes/{volume_id}").status_code == 202
        assert api.wait_status(volume_id, "error_deleting")["status"] == "error_deleting"
        address = own_stack.settings.temporal_address
        save_history(address, volume_id, "delete", "DeleteVolume-error-deleting")
    finally:
        moved.rename(volumes)


def as_workflow(workflow_id: str) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=workflow_id)
    return env


async def test_finish_is_fenced_and_idempotent(databases: Databases) -> None:
    """Only the owning workflow may write the final status; its retry is a no-op."""
    db = Database(databases.new("sqlite"))
    try:
        with db.transaction() as session:
            insert_volume(session, "v1", status="creating", workflow_id="wf-owner")
        finish = OperationActivities(db).finish
        request = FinalWrite(resource_id="v1", status="available")

        with pytest.raises(ApplicationError) as refused:
            await as_workflow("wf-stranger").run(finish, request)
        assert refused.value.type == LOST_OWNERSHIP
        assert refused.value.non_retryable

        await as_workflow("wf-owner").run(finish, request)
        await as_workflow("wf-owner").run(finish, request)  # a retry after success: no error
        with db.read() as session:
            volume = session.get(Volume, "v1")
            assert volume is not None
            assert (volume.status, volume.workflow_id, volume.last_workflow_id) == (
                "available",
                None,
                "wf-owner",
            )
        with pytest.raises(ApplicationError):  # released: even the old owner cannot write now
            await as_workflow("wf-owner").run(finish, FinalWrite(resource_id="v1", status="error"))
    finally:
        db.dispose()


def test_worker_registers_search_attributes_on_a_bare_server(
    tmp_path: Path, databases: Databases
) -> None:
    """A real cluster lacks our attributes; without them every workflow start would fail."""
    bare = DevServer(port=free_port(), ui_port=None, search_attributes=False)
    bare.start()
    try:
        stack = ThreadStack(stack_settings(tmp_path, databases.new("sqlite"), bare.address))
        stack.start()
        try:
            api = stack.api()
            volume_id = api.available_volume()["id"]
            poll(
                lambda: temporal_list(bare.address, f"VolumeId='{volume_id}'"),
                what="workflow visible by VolumeId",
            )
        finally:
            stack.stop()
    finally:
        bare.stop()


@pytest.mark.slow
def test_backend_without_a_worker_fails_the_operation(
    tmp_path: Path, temporal: DevServer, databases: Databases
) -> None:
    """A driver call nobody picks up within driver_queue_timeout ends in `error`, not limbo."""
    settings = stack_settings(
        tmp_path, databases.new("sqlite"), temporal.address, driver_queue_timeout=2.0
    )
    stack = ThreadStack(settings.model_copy(update={"backends": []})).start()
    backend = Process(settings, "worker", "--no-control", log=tmp_path / "backend.log").start()
    try:
        wait_backends_reported(settings.db_url)
        backend.kill()  # its report stays fresh for service_down_time: it will still be chosen
        api = stack.api()
        volume_id = api.create_volume()["id"]
        assert api.wait_status(volume_id, "error", "available")["status"] == "error"
        (create,) = temporal_list(temporal.address, f"VolumeId='{volume_id}'")
        described = temporal_cli(
            temporal.address, "workflow", "describe", "-w", create["execution"]["workflowId"]
        )
        assert "no worker of the backend took the request in time" in described
    finally:
        backend.stop()
        stack.stop()


def test_snapshot_driver_failure_is_error_with_a_message(own_stack: ThreadStack) -> None:
    api = own_stack.api()
    volume_id = api.available_volume()["id"]
    (Path(own_stack.settings.backends[0].options["path"]) / f"volume-{volume_id}").unlink()
    created = api.post("/snapshots", {"snapshot": {"volume_id": volume_id}}).json()["snapshot"]

    def failed() -> dict | None:
        body = api.get(f"/snapshots/{created['id']}").json()["snapshot"]
        return body if body["status"] == "error" else None

    poll(failed, what="snapshot in error")
    (message,) = api.get("/messages").json()["messages"]
    assert message["event_id"] == "VOLUME_VOLUME_SNAPSHOT_009_013"
    assert message["user_message"] == "create snapshot:Snapshot failed to create."
    assert message["resource_uuid"] == created["id"]
    address = own_stack.settings.temporal_address
    save_history(address, volume_id, "create_snapshot", "CreateSnapshot-error")
    assert api.delete(f"/snapshots/{created['id']}").status_code == 202  # error is deletable
