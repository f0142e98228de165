"""Snapshots, volumes created from them, clones, cascade deletes, and their error paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Api, ThreadStack, assert_fault, new_project, poll, save_history

SUMMARY = {
    "id",
    "created_at",
    "updated_at",
    "name",
    "description",
    "volume_id",
    "status",
    "size",
    "metadata",
}


def files(stack: ThreadStack) -> Path:
    return Path(stack.settings.backends[0].options["path"])


def write_at(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def read_at(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def snapshot(api: Api, volume_id: str, **fields: object) -> dict:
    response = api.post("/snapshots", {"snapshot": {"volume_id": volume_id, **fields}})
    assert response.status_code == 202, response.text
    return response.json()["snapshot"]


def wait_snapshot(api: Api, snapshot_id: str, *statuses: str) -> dict:
    def reached() -> dict | None:
        body = api.get(f"/snapshots/{snapshot_id}").json().get("snapshot")
        return body if body and body["status"] in statuses else None

    return poll(reached, what=f"snapshot {snapshot_id} in {statuses}")


def test_snapshot_restore_clone_and_cascade_on_both_databases(any_stack: ThreadStack) -> None:
    api = any_stack.api()
    root = files(any_stack)
    source = api.available_volume(1, name="src")
    write_at(root / f"volume-{source['id']}", 8192, b"before the snapshot")

    created = snapshot(api, source["id"], name=" s1 ", description="first", metadata={"k": "v"})
    assert set(created) >= SUMMARY and created["status"] == "creating"
    assert (created["name"], created["size"], created["user_id"]) == ("s1", 1, api.user)
    assert "os-extended-snapshot-attributes:progress" not in created
    shown = wait_snapshot(api, created["id"], "available")
    assert shown["os-extended-snapshot-attributes:progress"] == "100%"
    assert shown["os-extended-snapshot-attributes:project_id"] == api.project
    assert shown["metadata"] == {"k": "v"}
    write_at(root / f"volume-{source['id']}", 8192, b"after  the snapshot")

    restored = api.available_volume(2, snapshot_id=created["id"])
    assert (restored["snapshot_id"], restored["size"]) == (created["id"], 2)
    assert read_at(root / f"volume-{restored['id']}", 8192, 19) == b"before the snapshot"
    clone = api.available_volume(source_volid=source["id"])
    assert (clone["source_volid"], clone["size"]) == (source["id"], 1)
    assert read_at(root / f"volume-{clone['id']}", 8192, 19) == b"after  the snapshot"

    refused = api.delete(f"/volumes/{source['id']}")
    assert_fault(refused, 400, "must not be migrating, attached, belong to a group, have snapshots")
    assert api.delete(f"/volumes/{source['id']}", params={"cascade": "true"}).status_code == 202
    api.wait_gone(source["id"])
    address = any_stack.settings.temporal_address
    save_history(address, source["id"], "create_snapshot", "CreateSnapshot-available")
    save_history(address, restored["id"], "create", "CreateVolume-from-snapshot")
    save_history(address, clone["id"], "create", "CreateVolume-clone")
    save_history(address, source["id"], "delete", "DeleteVolume-cascade")
    assert_fault(api.get(f"/snapshots/{created['id']}"), 404)
    for volume in (restored, clone):
        api.delete(f"/volumes/{volume['id']}")
        api.wait_gone(volume["id"])
    mine = [f"volume-{v['id']}" for v in (source, restored, clone)] + [f"snapshot-{created['id']}"]
    assert [name for name in mine if (root / name).exists()] == []


def test_lists_update_metadata_and_delete(api: Api, stack: ThreadStack) -> None:
    volume = api.available_volume()
    first = snapshot(api, volume["id"], name="a")
    second = snapshot(api, volume["id"], name="b")
    wait_snapshot(api, first["id"], "available")
    wait_snapshot(api, second["id"], "available")
    (only,) = api.get("/snapshots", params={"name": "a"}).json()["snapshots"]
    assert set(only) == SUMMARY
    detail = api.get("/snapshots/detail", params={"sort": "name:asc"}).json()["snapshots"]
    assert [s["name"] for s in detail] == ["a", "b"]
    assert "os-extended-snapshot-attributes:progress" in detail[0]
    page = api.get(
        "/snapshots/detail", params={"sort": "name:asc", "limit": "1", "marker": first["id"]}
    ).json()["snapshots"]
    assert [s["name"] for s in page] == ["b"]
    counted = api.get("/snapshots", params={"with_count": "true", "volume_id": volume["id"]}).json()
    assert counted["count"] == 2

    renamed = api.put(f"/snapshots/{first['id']}", {"snapshot": {"name": "renamed"}}).json()
    assert renamed["snapshot"]["name"] == "renamed"
    base = f"/snapshots/{first['id']}/metadata"
    assert api.post(base, {"metadata": {"x": "1"}}).json() == {"metadata": {"x": "1"}}
    assert api.get(f"{base}/x").json() == {"meta": {"x": "1"}}
    assert_fault(api.get(f"{base}/y"), 404, f"Snapshot {first['id']} has no metadata with key y.")

    assert api.delete(f"/snapshots/{first['id']}").status_code == 202
    poll(lambda: api.get(f"/snapshots/{first['id']}").status_code == 404, what="snapshot gone")
    address = stack.settings.temporal_address
    save_history(address, volume["id"], "delete_snapshot", "DeleteSnapshot-deleted")


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ({"snapshot": {}}, 400, "'volume_id' is a required property"),
        ({"snapshot": {"volume_id": "v", "colour": 1}}, 400, "'colour' was unexpected"),
        ({"snapshot": {"volume_id": "v", "force": "maybe"}}, 400, "boolean"),
        ({"snapshot": {"volume_id": "nope"}}, 404, "Volume nope could not be found."),
    ],
)
def test_bad_snapshot_requests(api: Api, body: object, code: int, fragment: str) -> None:
    assert_fault(api.post("/snapshots", body), code, fragment)


def test_force_flag_rules(api: Api) -> None:
    volume_id = api.available_volume()["id"]
    message = assert_fault(
        api.post("/snapshots", {"snapshot": {"volume_id": volume_id, "force": False}}), 400
    )
    assert message.startswith("Since microversion 3.66 the 'force' flag is invalid")
    accepted = api.post("/snapshots", {"snapshot": {"volume_id": volume_id, "force": True}})
    assert accepted.status_code == 202
    old = api.post(
        "/snapshots", {"snapshot": {"volume_id": volume_id, "force": False}}, version="3.65"
    )
    assert old.status_code == 202


def test_snapshot_of_a_volume_in_error_or_unplaced(own_stack: ThreadStack) -> None:
    api = own_stack.api()
    (backend,) = [
        s for s in api.get("/os-services").json()["services"] if s["binary"] == "cinder-volume"
    ]
    api.put("/os-services/disable", {"host": backend["host"], "binary": "cinder-volume"})
    unplaced = api.wait_status(api.create_volume()["id"], "error")
    assert_fault(
        api.post("/snapshots", {"snapshot": {"volume_id": unplaced["id"]}}),
        400,
        "has not been scheduled to any host",
    )


def test_snapshot_quota(api: Api) -> None:
    volume_id = api.available_volume(2)["id"]
    api.put(f"/os-quota-sets/{api.project}", {"quota_set": {"snapshots": 1}})
    snapshot(api, volume_id)
    response = api.post("/snapshots", {"snapshot": {"volume_id": volume_id}})
    assert_fault(
        response, 413, "SnapshotLimitExceeded: Maximum number of snapshots allowed (1) exceeded"
    )
    api.put(f"/os-quota-sets/{api.project}", {"quota_set": {"snapshots": 5, "gigabytes": 4}})
    assert_fault(
        api.post("/snapshots", {"snapshot": {"volume_id": volume_id}}),
        413,
        "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed "
        "gigabytes quota. Requested 2G, quota is 4G and 4G has been consumed.",
    )
    usage = api.get(f"/os-quota-sets/{api.project}", params={"usage": "true"}).json()
    assert usage["quota_set"]["snapshots"]["in_use"] == 1


def test_busy_and_bad_sources(api: Api, stack: ThreadStack) -> None:
    volume_id = api.available_volume()["id"]
    hold = stack.settings.failpoint_dir / "driver.create_snapshot.before.hold"
    hold.touch()
    try:
        creating = snapshot(api, volume_id)
        assert_fault(
            api.delete(f"/snapshots/{creating['id']}"), 400, "status must be available or error"
        )
        assert_fault(
            api.post("/volumes", {"volume": {"snapshot_id": creating["id"]}}),
            400,
            "Originating snapshot status must be one of 'available' values",
        )
    finally:
        hold.unlink()
    done = wait_snapshot(api, creating["id"], "available")
    assert_fault(api.post("/volumes", {"volume": {"snapshot_id": done["id"], "size": 0}}), 400)
    too_small = api.post("/volumes", {"volume": {"snapshot_id": done["id"], "size": 1}})
    assert too_small.status_code == 202  # equal size is fine
    api.wait_status(too_small.json()["volume"]["id"], "available")
    assert_fault(api.post("/volumes", {"volume": {"source_volid": "nope"}}), 404)
    assert_fault(
        api.post("/volumes", {"volume": {"snapshot_id": "nope"}}),
        404,
        "Snapshot nope could not be found.",
    )
    stranger = api.as_user("bob", project=new_project())
    assert_fault(stranger.post("/volumes", {"volume": {"snapshot_id": done["id"]}}), 404)
    assert_fault(stranger.delete(f"/snapshots/{done['id']}"), 404)


def test_source_size_and_zone_rules(api: Api) -> None:
    source = api.available_volume(2)
    response = api.post("/volumes", {"volume": {"source_volid": source["id"], "size": 1}})
    assert_fault(
        response, 400, "Volume size '1'GB cannot be smaller than original volume size 2GB."
    )
    snap = wait_snapshot(api, snapshot(api, source["id"])["id"], "available")
    response = api.post("/volumes", {"volume": {"snapshot_id": snap["id"], "size": 1}})
    assert_fault(response, 400, "cannot be smaller than the snapshot size 2GB")


def test_snapshot_being_copied_cannot_be_deleted(api: Api, stack: ThreadStack) -> None:
    source_id = api.available_volume()["id"]
    snap = wait_snapshot(api, snapshot(api, source_id)["id"], "available")
    hold = stack.settings.failpoint_dir / "driver.create_volume_from_snapshot.before.hold"
    hold.touch()
    try:
        copy = api.create_volume(snapshot_id=snap["id"])
        poll(
            (
                stack.settings.failpoint_dir / "driver.create_volume_from_snapshot.before.reached"
            ).exists
        )
        assert_fault(api.delete(f"/snapshots/{snap['id']}"), 400, "is being created from it")
        clone_hold = stack.settings.failpoint_dir / "driver.create_cloned_volume.before.hold"
        clone_hold.touch()
        try:
            clone = api.create_volume(source_volid=source_id)
            assert_fault(
                api.delete(f"/volumes/{source_id}", params={"cascade": "true"}),
                400,
                "is being cloned from it",
            )
        finally:
            clone_hold.unlink()
    finally:
        hold.unlink()
    api.wait_status(copy["id"], "available")
    api.wait_status(clone["id"], "available")


def test_force_delete_is_for_admins(api: Api, member: Api) -> None:
    snap = wait_snapshot(api, snapshot(api, api.available_volume()["id"])["id"], "available")
    action = f"/snapshots/{snap['id']}/action"
    assert_fault(member.post(action, {"os-force_delete": {}}), 403, "force_delete")
    assert api.post(action, {"os-force_delete": {}}).status_code == 202
    poll(lambda: api.get(f"/snapshots/{snap['id']}").status_code == 404, what="force deleted")


def test_cascade_deletes_every_snapshot(api: Api, stack: ThreadStack) -> None:
    """Each snapshot's end is a part of the delete: it must not end the others early."""
    root = files(stack)
    volume = api.available_volume(1)
    made = [wait_snapshot(api, snapshot(api, volume["id"])["id"], "available") for _ in range(3)]
    assert api.delete(f"/volumes/{volume['id']}", params={"cascade": "true"}).status_code == 202
    api.wait_gone(volume["id"])
    for snap in made:
        assert_fault(api.get(f"/snapshots/{snap['id']}"), 404)
        assert not (root / f"snapshot-{snap['id']}").exists()
