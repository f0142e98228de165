"""A reset of a volume an operation owns goes to that operation's workflow, which stops,
compensates and writes the reset itself; and the `cinderflow manage` escape hatch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from tests.api.test_reset_status import assert_usage_is_a_recount, reset
from tests.helpers import (
    Background,
    ThreadStack,
    assert_fault,
    history_steps,
    hold_failpoint,
    poll,
    reset_in_progress,
    save_history,
    settings_env,
    temporal_cli,
    wait_failpoint,
    workflows_of,
)
from tests.workflow.test_extend import (  # noqa: F401 (the fixture is used by name)
    Cloud,
    _waiting,
    cloud,
    complete,
    extend_workflows,
    needs_qemu,
)


def workflow_status(address: str, workflow_id: str) -> str:
    described = json.loads(
        temporal_cli(address, "workflow", "describe", "-w", workflow_id, "-o", "json")
    )
    return described["workflowExecutionInfo"]["status"]


@needs_qemu
def test_reset_stops_an_extend_waiting_for_the_compute(cloud: Cloud) -> None:  # noqa: F811
    api = cloud.api("silent")
    volume_id = _waiting(cloud, api)
    address = cloud.stack.settings.temporal_address
    (workflow_id,) = poll(lambda: extend_workflows(address, volume_id))

    response = reset(api, volume_id, status="in-use")
    assert response.status_code == 202, response.text
    volume = api.volume(volume_id) or {}
    assert (volume["status"], volume["size"]) == ("in-use", 1)
    assert "extend_new_size" not in volume["metadata"]
    assert_usage_is_a_recount(api)

    assert workflow_status(address, workflow_id) == "WORKFLOW_EXECUTION_STATUS_COMPLETED"
    steps = history_steps(address, workflow_id)
    assert steps[-2:] == ["driver.reset_state", "operation.finish"]
    assert steps.count("operation.finish") == 1  # the reset's write is the one final write
    late = complete(api, volume_id, False)
    assert late.status_code == 400 and "Volume is not being extended." in late.text
    listed = api.get("/messages", version="3.5").json()["messages"]
    assert [m["event_id"] for m in listed if m["resource_uuid"] == volume_id] == [
        "VOLUME_VOLUME_101_102"
    ]
    save_history(address, volume_id, "extend", "ExtendVolume-reset-while-waiting")


def test_reset_stops_a_create_stuck_in_the_driver(own_stack: ThreadStack) -> None:
    api = own_stack.api()
    hold = hold_failpoint(own_stack.settings, "driver.create_volume.before")
    try:
        volume_id = api.create_volume()["id"]
        wait_failpoint(own_stack.settings, "driver.create_volume.before")
        refused = reset(api, volume_id, status="available")
        assert refused.status_code == 400  # the driver: there is no file yet
        assert "does not exist" in refused.text
        assert (api.volume(volume_id) or {})["status"] == "creating"

        response = reset(api, volume_id, status="error")
        assert response.status_code == 202, response.text
        assert (api.volume(volume_id) or {})["status"] == "error"
        assert_usage_is_a_recount(api)
        address = own_stack.settings.temporal_address
        save_history(address, volume_id, "create", "CreateVolume-reset-in-driver")
    finally:
        hold.unlink()
    assert api.delete(f"/volumes/{volume_id}").status_code == 202
    api.wait_gone(volume_id)


def test_reset_stops_a_delete_stuck_in_the_driver(own_stack: ThreadStack) -> None:
    api = own_stack.api()
    volume_id = api.available_volume()["id"]
    hold = hold_failpoint(own_stack.settings, "driver.delete_volume.before")
    try:
        assert api.delete(f"/volumes/{volume_id}").status_code == 202
        wait_failpoint(own_stack.settings, "driver.delete_volume.before")
        response = reset(api, volume_id, status="available")
        assert response.status_code == 202, response.text
        assert (api.volume(volume_id) or {})["status"] == "available"
    finally:
        hold.unlink()
    path = Path(own_stack.settings.backends[0].options["path"]) / f"volume-{volume_id}"
    assert path.is_file()  # the abandoned delete never ran
    assert_usage_is_a_recount(api)
    address = own_stack.settings.temporal_address
    save_history(address, volume_id, "delete", "DeleteVolume-reset-in-driver")


def _manage(
    stack: ThreadStack, *args: str, kind: str = "volume"
) -> subprocess.CompletedProcess[str]:
    """`cinderflow manage <kind> reset-state <args>` against the stack's settings."""
    return subprocess.run(
        [sys.executable, "-m", "cinderflow", "manage", kind, "reset-state", *args],
        env=settings_env(stack.settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_manage_reset_state(own_stack: ThreadStack) -> None:
    api = own_stack.api()
    hold = hold_failpoint(own_stack.settings, "driver.create_volume.before")
    try:
        volume_id = api.create_volume()["id"]
        wait_failpoint(own_stack.settings, "driver.create_volume.before")
        (workflow_id,) = [
            line.split()[1]
            for line in temporal_cli(
                own_stack.settings.temporal_address,
                "workflow", "list", "--query", f"VolumeId='{volume_id}'",
            ).splitlines()[1:]
        ]  # fmt: skip

        refused = _manage(own_stack, volume_id, "--state", "error")
        assert refused.returncode == 1
        assert f"Operation {workflow_id} owns volume {volume_id}" in refused.stderr

        done = _manage(own_stack, volume_id, "--state", "error", "--force")
        assert done.returncode == 0, done.stderr
        assert f"volume {volume_id}: creating -> error" in done.stdout
        assert f"terminated workflow {workflow_id}" in done.stdout
        assert "manage reset-state" in done.stderr  # logged
        assert (api.volume(volume_id) or {})["status"] == "error"
        status = workflow_status(own_stack.settings.temporal_address, workflow_id)
        assert status == "WORKFLOW_EXECUTION_STATUS_TERMINATED"
    finally:
        hold.unlink()

    refused = _manage(own_stack, volume_id, "--state", "in-use")
    assert refused.returncode == 1 and "does not have any attachments" in refused.stderr
    assert _manage(own_stack, volume_id, "--state", "error_deleting").returncode == 1
    forced = _manage(own_stack, volume_id, "--state", "error_deleting", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (api.volume(volume_id) or {})["status"] == "error_deleting"
    assert _manage(own_stack, volume_id, "--state", "available").returncode == 0
    assert (api.volume(volume_id) or {})["status"] == "available"
    assert_usage_is_a_recount(api)


def test_manage_unknown_volume(own_stack: ThreadStack) -> None:
    result = _manage(own_stack, "no-such-volume", "--state", "available")
    assert result.returncode == 1 and "could not be found" in result.stderr


@needs_qemu
def test_cancel_stops_an_extend_waiting_for_the_compute(cloud: Cloud) -> None:  # noqa: F811
    """A workflow cancel (Temporal UI or CLI) of an extend that waits for its compute: the
    operation stops, the volume returns to the status it had (in-use), nothing stays reserved."""
    api = cloud.api("silent")
    volume_id = _waiting(cloud, api)
    address = cloud.stack.settings.temporal_address
    (workflow_id,) = poll(lambda: extend_workflows(address, volume_id))

    temporal_cli(address, "workflow", "cancel", "-w", workflow_id)
    volume = api.wait_status(volume_id, "in-use")
    assert volume["size"] == 1
    assert "extend_new_size" not in volume["metadata"]
    assert_usage_is_a_recount(api)
    poll(
        lambda: workflow_status(address, workflow_id) == "WORKFLOW_EXECUTION_STATUS_COMPLETED",
        what="the extend ended",
    )
    late = complete(api, volume_id, False)
    assert late.status_code == 400 and "Volume is not being extended." in late.text
    save_history(address, volume_id, "extend", "ExtendVolume-cancelled")


def test_a_reset_after_the_drivers_delete_ran_tells_the_truth(own_stack: ThreadStack) -> None:
    """The delete has already run on the backend (its activity has not returned) when the
    reset to available comes: the reset waits for it; then the delete is past the point where
    it could stop, so the reset is refused (409) and the delete ends."""
    api = own_stack.api()
    volume_id = api.available_volume()["id"]
    hold = hold_failpoint(own_stack.settings, "driver.delete_volume.after")
    try:
        assert api.delete(f"/volumes/{volume_id}").status_code == 202
        wait_failpoint(own_stack.settings, "driver.delete_volume.after")
        asking = Background(lambda: reset(api, volume_id, status="available"))
        address = own_stack.settings.temporal_address
        (workflow_id,) = poll(lambda: workflows_of(address, volume_id, "delete"))
        poll(lambda: reset_in_progress(address, workflow_id), what="the reset waiting")
        assert "driver.reset_state" not in history_steps(address, workflow_id)
    finally:
        hold.unlink()
    answer = asking.result()
    assert_fault(answer, 409, "has passed the point where it can stop")
    api.wait_gone(volume_id)
    save_history(address, volume_id, "delete", "DeleteVolume-reset-refused-after-the-driver")


def _told_to_stop(address: str, workflow_id: str) -> bool:
    """The driver activity has heartbeated since its cancellation was requested: the cancel
    came back with that heartbeat, so the driver's call has been told to stop."""
    events = json.loads(temporal_cli(address, "workflow", "show", "-w", workflow_id, "-o", "json"))[
        "events"
    ]
    asked = [e["eventTime"] for e in events if "activityTaskCancelRequestedEventAttributes" in e]
    if not asked:
        return False
    described = json.loads(
        temporal_cli(address, "workflow", "describe", "-w", workflow_id, "-o", "json")
    )
    beats = [a.get("lastHeartbeatTime", "") for a in described.get("pendingActivities", [])]
    return any(_instant(beat) > _instant(asked[-1]) for beat in beats if beat)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_manage_snapshot_reset_state(own_stack: ThreadStack) -> None:
    """The operator's way out for a snapshot whose operation cannot finish: --force ends the
    snapshot's operation and its hold on the volume, which can then be extended again."""
    api = own_stack.api()
    volume_id = api.available_volume()["id"]
    # Held after its copy: the terminated operation's driver call, let go, then has nothing
    # left to do to the volume file (a copy still running would hold QEMU's read lock on it,
    # which an extend would take for a running guest's).
    hold = hold_failpoint(own_stack.settings, "driver.create_snapshot.after")
    try:
        created = api.post("/snapshots", {"snapshot": {"volume_id": volume_id}})
        snapshot_id = created.json()["snapshot"]["id"]
        wait_failpoint(own_stack.settings, "driver.create_snapshot.after")
        refused = _manage(own_stack, snapshot_id, "--state", "error", kind="snapshot")
        assert refused.returncode == 1 and "owns snapshot" in refused.stderr
        done = _manage(own_stack, snapshot_id, "--state", "error", "--force", kind="snapshot")
        assert done.returncode == 0, done.stderr
        assert f"snapshot {snapshot_id}: creating -> error, terminated workflow" in done.stdout
    finally:
        hold.unlink()
    shown = api.get(f"/snapshots/{snapshot_id}").json()["snapshot"]
    assert shown["status"] == "error"
    grown = api.post(f"/volumes/{volume_id}/action", {"os-extend": {"new_size": 2}})
    assert grown.status_code == 202, grown.text  # the snapshot's hold ended with it
    api.wait_status(volume_id, "available")
    unknown = _manage(own_stack, "no-such-snapshot", "--state", "error", kind="snapshot")
    assert unknown.returncode == 1 and "could not be found" in unknown.stderr


def test_a_reset_stops_a_copy_and_a_refusal_lets_it_run_again(own_stack: ThreadStack) -> None:
    """A reset during a clone's copy: the driver is asked to stop and kills its qemu-img; the
    reset then finds no clone on the backend and is refused; the copy runs again and the clone
    is made, with the source's data and no temporary file left."""
    api = own_stack.api()
    source_id = api.available_volume()["id"]
    root = Path(own_stack.settings.backends[0].options["path"])
    data = os.urandom(32 << 20)
    with open(root / f"volume-{source_id}", "r+b") as handle:
        handle.write(data)
    hold = hold_failpoint(own_stack.settings, "driver.create_cloned_volume.progress")
    try:
        clone_id = api.create_volume(source_volid=source_id)["id"]
        wait_failpoint(own_stack.settings, "driver.create_cloned_volume.progress")
        asking = Background(lambda: reset(api, clone_id, status="available"))
        address = own_stack.settings.temporal_address
        (workflow_id,) = poll(lambda: workflows_of(address, clone_id, "create"))
        poll(lambda: _told_to_stop(address, workflow_id), what="the copy told to stop")
    finally:
        hold.unlink()
    answer = asking.result()
    assert_fault(answer, 400, "does not exist")
    api.wait_status(clone_id, "available", timeout=60)
    with open(root / f"volume-{clone_id}", "rb") as handle:
        assert handle.read(len(data)) == data
    assert [p.name for p in root.iterdir() if p.name.endswith(".partial")] == []
    listed = api.get("/messages", version="3.5").json()["messages"]
    assert [m["event_id"] for m in listed if m["resource_uuid"] == clone_id] == [
        "VOLUME_VOLUME_101_101"
    ]
    save_history(address, clone_id, "create", "CreateVolume-reset-refused-during-copy")
