"""os-reset_status: Cinder's validation, the refusal tables, the driver asked first, force."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Api, ThreadStack, assert_fault, poll, save_history

CONNECTOR = {"initiator": "iqn.2026-11.test:reset", "host": "compute9", "ip": "127.0.0.1"}


def reset(api: Api, volume_id: str, **fields: Any) -> Any:
    return api.post(f"/volumes/{volume_id}/action", {"os-reset_status": fields})


def attached(api: Api) -> tuple[str, str]:
    """An in-use volume with one connected attachment: (volume id, attachment id)."""
    volume_id = api.available_volume()["id"]
    body = {"volume_uuid": volume_id, "instance_uuid": str(uuid.uuid4()), "connector": CONNECTOR}
    created = api.post("/attachments", {"attachment": body})
    assert created.status_code == 200, created.text
    attachment_id = created.json()["attachment"]["id"]
    done = api.post(f"/attachments/{attachment_id}/action", {"os-complete": None})
    assert done.status_code == 204
    return volume_id, attachment_id


def exports(stack: ThreadStack, volume_id: str) -> list[str]:
    folder = Path(stack.settings.backends[0].options["path"]) / ".exports" / f"volume-{volume_id}"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def assert_usage_is_a_recount(api: Api) -> None:
    """Quota usage equals the sizes of the project's volumes, and nothing is reserved."""
    volumes = api.get("/volumes/detail").json()["volumes"]
    usage = api.get(f"/os-quota-sets/{api.project}", params={"usage": "true"}).json()
    gigabytes = usage["quota_set"]["gigabytes"]
    assert gigabytes["in_use"] == sum(v["size"] for v in volumes)
    assert gigabytes["reserved"] == 0
    assert usage["quota_set"]["volumes"]["in_use"] == len(volumes)


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({}, "Must specify 'status', 'attach_status' or 'migration_status' for update."),
        ({"status": "sleeping"}, "Volume status: sleeping is invalid, valid statuses are: "),
        ({"attach_status": "half"}, "Volume attach status: half is invalid"),
        ({"migration_status": "gone"}, "Volume migration status: gone is invalid"),
        ({"status": "available", "color": "red"}, "color"),
        ({"status": "error", "force": "perhaps"}, "force"),
    ],
)
def test_bad_bodies_are_400(api: Api, fields: dict[str, Any], fragment: str) -> None:
    volume_id = api.available_volume()["id"]
    assert_fault(reset(api, volume_id, **fields), 400, fragment)
    assert (api.volume(volume_id) or {})["status"] == "available"


@pytest.mark.parametrize(
    ("status", "fragment"),
    [
        ("in-use", "Cannot reset-state to in-use because volume does not have any attachments."),
        ("deleting", "Cannot reset-state to deleting: to delete the volume, delete it"),
        ("error_deleting", "Cannot reset-state to error_deleting: only a failed delete"),
        ("detaching", "Cannot reset-state to detaching: attachment states follow"),
        ("creating", "Cannot reset-state to creating: only cinderflow sets creating"),
        ("extending", "Cannot reset-state to extending: only cinderflow sets extending"),
        ("retyping", "Cannot reset-state to retyping"),
    ],
)
def test_refused_targets(api: Api, status: str, fragment: str) -> None:
    volume_id = api.available_volume()["id"]
    assert_fault(reset(api, volume_id, status=status.upper()), 400, fragment)
    assert (api.volume(volume_id) or {})["status"] == "available"


def test_members_may_not_reset(api: Api, member: Api) -> None:
    volume_id = api.available_volume()["id"]
    assert_fault(reset(member, volume_id, status="error"), 403)
    assert (api.volume(volume_id) or {})["status"] == "available"


def test_available_while_attached_needs_detached(api: Api, stack: ThreadStack) -> None:
    volume_id, attachment_id = attached(api)
    assert len(exports(stack, volume_id)) == 1
    message = assert_fault(reset(api, volume_id, status="available"), 400, attachment_id)
    assert "attachments still exist" in message and "--attach-status detached" in message
    assert (api.volume(volume_id) or {})["status"] == "in-use"

    response = reset(api, volume_id, status="available", attach_status="detached")
    assert response.status_code == 202, response.text
    volume = api.volume(volume_id) or {}
    assert (volume["status"], volume["attachments"]) == ("available", [])
    assert exports(stack, volume_id) == []  # the driver terminated the connection
    assert_fault(api.get(f"/attachments/{attachment_id}"), 404)
    assert_usage_is_a_recount(api)


def test_detached_alone_makes_an_in_use_volume_available(api: Api, stack: ThreadStack) -> None:
    volume_id, _ = attached(api)
    response = reset(api, volume_id, attach_status="DETACHED")
    assert response.status_code == 202, response.text
    volume = api.volume(volume_id) or {}
    assert (volume["status"], volume["attachments"]) == ("available", [])
    save_history(stack.settings.temporal_address, volume_id, "reset", "ResetVolume-detached")


def test_in_use_with_attachments_and_error_are_allowed(api: Api) -> None:
    volume_id, _ = attached(api)
    assert reset(api, volume_id, status="error").status_code == 202
    assert (api.volume(volume_id) or {})["status"] == "error"
    assert reset(api, volume_id, status="in-use").status_code == 202
    assert (api.volume(volume_id) or {})["status"] == "in-use"
    assert_fault(reset(api, volume_id, status="in-use", attach_status="detached"), 400, "in-use")
    assert_usage_is_a_recount(api)


def test_migration_status(api: Api) -> None:
    volume_id = api.available_volume()["id"]
    assert reset(api, volume_id, migration_status="error").status_code == 202
    assert (api.volume(volume_id) or {})["os-vol-mig-status-attr:migstat"] == "error"
    assert reset(api, volume_id, migration_status="none").status_code == 202
    assert (api.volume(volume_id) or {})["os-vol-mig-status-attr:migstat"] is None


def test_driver_refusal_and_force(api: Api, stack: ThreadStack) -> None:
    volume_id = api.available_volume()["id"]
    (Path(stack.settings.backends[0].options["path"]) / f"volume-{volume_id}").unlink()
    assert reset(api, volume_id, status="error").status_code == 202

    message = assert_fault(reset(api, volume_id, status="available"), 400, "Reset refused")
    assert "does not exist, so the volume cannot be available" in message
    assert (api.volume(volume_id) or {})["status"] == "error"
    listed = api.get("/messages", version="3.5").json()["messages"]
    assert [m["event_id"] for m in listed if m["resource_uuid"] == volume_id] == [
        "VOLUME_VOLUME_101_101"
    ]
    address = stack.settings.temporal_address
    save_history(address, volume_id, "reset", "ResetVolume-refused")

    assert reset(api, volume_id, status="available", force=True).status_code == 202
    assert (api.volume(volume_id) or {})["status"] == "available"
    save_history(address, volume_id, "reset", "ResetVolume-forced")
    assert_usage_is_a_recount(api)


# Snapshots -----------------------------------------------------------------------------------


def snapshot_of(api: Api, volume_id: str) -> str:
    created = api.post("/snapshots", {"snapshot": {"volume_id": volume_id}})
    assert created.status_code == 202, created.text
    snapshot_id = created.json()["snapshot"]["id"]
    poll(lambda: snapshot_status(api, snapshot_id) == "available", what="snapshot available")
    return snapshot_id


def snapshot_status(api: Api, snapshot_id: str) -> str:
    return api.get(f"/snapshots/{snapshot_id}").json()["snapshot"]["status"]


def reset_snapshot(api: Api, snapshot_id: str, **fields: Any) -> Any:
    return api.post(f"/snapshots/{snapshot_id}/action", {"os-reset_status": fields})


def test_snapshot_reset(api: Api, member: Api) -> None:
    snapshot_id = snapshot_of(api, api.available_volume()["id"])
    assert_fault(reset_snapshot(member, snapshot_id, status="error"), 403)
    assert_fault(reset_snapshot(api, snapshot_id, status="bogus"), 400, "Snapshot status: bogus")
    assert_fault(reset_snapshot(api, snapshot_id), 400, "status")
    for refused in ("deleting", "error_deleting", "creating", "restoring"):
        assert_fault(
            reset_snapshot(api, snapshot_id, status=refused),
            400,
            f"Cannot reset-state to {refused}",
        )
    assert snapshot_status(api, snapshot_id) == "available"
    assert reset_snapshot(api, snapshot_id, status="ERROR").status_code == 202
    assert snapshot_status(api, snapshot_id) == "error"
    assert reset_snapshot(api, snapshot_id, status="available").status_code == 202
    assert snapshot_status(api, snapshot_id) == "available"


def test_null_fields_mean_not_given(api) -> None:
    """Cinder's schema takes null for each field (`['string', 'null']`): only the given ones
    are reset."""
    volume = api.available_volume(1)
    body = {"os-reset_status": {"status": "error", "attach_status": None, "migration_status": None}}
    assert api.post(f"/volumes/{volume['id']}/action", body).status_code == 202
    assert api.wait_status(volume["id"], "error")["status"] == "error"
