"""Volume transfers: both route families, auth keys, accept as a workflow across two projects'
quotas, snapshots moved or left behind, encrypted volumes, concurrent accepts."""

from __future__ import annotations

import base64
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cinderflow.drivers import qemu_img
from tests.api.test_encrypted_volumes import encrypted_type, keys_of
from tests.helpers import (
    Api,
    ThreadStack,
    assert_fault,
    assert_usage_is_recount,
    available_snapshot,
    new_project,
    poll,
    save_history,
    temporal_cli,
    workflows_of,
)


def offer(api: Api, volume_id: str, version: str = "3.71", **fields) -> dict:
    body = {"transfer": {"volume_id": volume_id, "name": "t1", **fields}}
    created = api.post("/volume-transfers", body, version=version)
    assert created.status_code == 202, created.text
    return created.json()["transfer"]


def accept(api: Api, transfer_id: str, key: str):
    return api.post(f"/volume-transfers/{transfer_id}/accept", {"accept": {"auth_key": key}})


def receiver(api: Api) -> Api:
    return api.as_user("bob", project=new_project(), roles="member,reader")


def settled(api: Api, volume_id: str) -> dict:
    """The volume once no accept owns it (as its admin sees it)."""
    return poll(
        lambda: (v := api.volume(volume_id)) and v["status"] != "awaiting-transfer" and v,
        what="accept ended",
    )


def in_use(api: Api, project: str) -> dict[str, int]:
    quota_set = api.get(f"/os-quota-sets/{project}", params={"usage": "true"}).json()["quota_set"]
    return {k: v["in_use"] for k, v in quota_set.items() if isinstance(v, dict) and v["in_use"]}


def test_offer_show_list_and_withdraw(api: Api) -> None:
    volume = api.available_volume(1)
    available_snapshot(api, volume["id"])
    created = offer(api, volume["id"])
    assert len(created["auth_key"]) == 16 and created["no_snapshots"] is False
    assert created["source_project_id"] == api.project and created["accepted"] is False
    assert created["destination_project_id"] is None
    assert "/os-volume-transfer/" in created["links"][0]["href"]
    assert api.volume(volume["id"])["status"] == "awaiting-transfer"
    shown = api.get(f"/volume-transfers/{created['id']}").json()["transfer"]
    assert "auth_key" not in shown and shown["volume_id"] == volume["id"]
    listed = api.get("/volume-transfers").json()["transfers"]
    assert [t["id"] for t in listed] == [created["id"]]
    assert set(listed[0]) == {"id", "volume_id", "name", "links"}
    legacy = api.get("/os-volume-transfer/detail", version="3.0").json()["transfers"]
    assert [t["id"] for t in legacy] == [created["id"]] and "no_snapshots" not in legacy[0]
    assert api.get("/volume-transfers", params={"name": "other"}).json()["transfers"] == []
    outsider = receiver(api)
    assert_fault(outsider.get(f"/volume-transfers/{created['id']}"), 404, "could not be found")
    assert outsider.get("/volume-transfers").json()["transfers"] == []
    assert_fault(offer_raw(api, volume["id"]), 400, "status must be available")
    assert api.delete(f"/volume-transfers/{created['id']}").status_code == 202
    assert api.volume(volume["id"])["status"] == "available"
    assert api.get("/volume-transfers").json()["transfers"] == []


def offer_raw(api: Api, volume_id: str, version: str = "3.71", **fields):
    return api.post(
        "/volume-transfers", {"transfer": {"volume_id": volume_id, **fields}}, version=version
    )


def test_bad_offers(api: Api) -> None:
    volume = api.available_volume(1)
    assert_fault(offer_raw(api, "no-such-volume"), 404)
    assert_fault(offer_raw(api, volume["id"], version="3.54", no_snapshots=True), 400)
    legacy = api.post(
        "/os-volume-transfer", {"transfer": {"volume_id": volume["id"], "no_snapshots": False}}
    )
    assert_fault(legacy, 400)
    assert_fault(offer_raw(api, volume["id"], color="red"), 400)
    assert_fault(offer_raw(api, volume["id"], no_snapshots=None), 400)
    created = offer(api, volume["id"])
    surrogate = '{"accept": {"auth_key": "\\ud800"}}'
    odd = api.request(
        "POST",
        f"/volume-transfers/{created['id']}/accept",
        content=surrogate,
        headers={"Content-Type": "application/json"},
    )
    assert_fault(odd, 400, "not valid Unicode")  # before any key check
    assert api.delete(f"/volume-transfers/{created['id']}").status_code == 202
    assert api.volume(volume["id"])["status"] == "available"


def test_accept_moves_volume_snapshot_and_quota(api: Api, stack: ThreadStack) -> None:
    volume = api.available_volume(2)
    snapshot = available_snapshot(api, volume["id"])
    created = offer(api, volume["id"])
    other = receiver(api)
    assert_fault(
        accept(other, created["id"], "0" * 16),
        400,
        f"Invalid auth key: Attempt to transfer {created['id']} with invalid auth key.",
    )
    assert api.volume(volume["id"])["status"] == "awaiting-transfer"
    before = in_use(api, api.project)
    assert before["volumes"] == 1 and before["snapshots"] == 1
    answered = accept(other, created["id"], created["auth_key"])
    assert answered.status_code == 202, answered.text
    assert answered.json()["transfer"]["id"] == created["id"]
    moved = settled(api, volume["id"])
    assert moved["status"] == "available"
    assert moved["os-vol-tenant-attr:tenant_id"] == other.project
    snap = api.get(f"/snapshots/{snapshot['id']}").json()["snapshot"]
    assert snap["os-extended-snapshot-attributes:project_id"] == other.project
    assert in_use(api, api.project).get("volumes") is None
    after = in_use(api, other.project)
    assert after["volumes"] == 1 and after["snapshots"] == 1 and after["gigabytes"] == 4
    assert api.get("/volume-transfers").json()["transfers"] == []
    assert_fault(accept(other, created["id"], created["auth_key"]), 404)
    assert_usage_is_recount(stack, api.project, other.project)
    assert other.volume(volume["id"])["status"] == "available"  # visible to its new project
    address = stack.settings.temporal_address
    save_history(address, volume["id"], "accept_transfer", "AcceptTransfer-with-snapshot")
    # the auth key is nowhere: not in the database files, not in the workflow's history
    key = created["auth_key"].encode()
    database = Path(stack.settings.db_url.removeprefix("sqlite:///"))
    for stored in database.parent.glob(database.name + "*"):
        assert key not in stored.read_bytes(), stored
    (workflow_id,) = workflows_of(address, volume["id"], "accept_transfer")
    shown = temporal_cli(address, "workflow", "show", "-w", workflow_id, "-o", "json")
    decoded = " ".join(
        base64.b64decode(data).decode(errors="replace")
        for data in re.findall(r'"data": "([A-Za-z0-9+/=]+)"', shown)
    )
    assert created["id"] in decoded  # the payloads were read
    assert created["auth_key"] not in shown + decoded


def test_no_snapshots_leaves_them_and_blocks_delete(api: Api, stack: ThreadStack) -> None:
    volume = api.available_volume(1)
    snapshot = available_snapshot(api, volume["id"])
    created = offer(api, volume["id"], no_snapshots=True)
    assert created["no_snapshots"] is True
    other = receiver(api)
    assert accept(other, created["id"], created["auth_key"]).status_code == 202
    moved = settled(api, volume["id"])
    assert moved["os-vol-tenant-attr:tenant_id"] == other.project
    snap = api.get(f"/snapshots/{snapshot['id']}").json()["snapshot"]
    assert snap["os-extended-snapshot-attributes:project_id"] == api.project
    assert_fault(other.delete(f"/volumes/{volume['id']}"), 400, "snapshots")
    cascade = other.delete(f"/volumes/{volume['id']}", params={"cascade": "true"})
    assert_fault(cascade, 400)  # the snapshots left behind are not the receiver's to delete
    assert api.get(f"/snapshots/{snapshot['id']}").json()["snapshot"]["status"] == "available"
    assert_usage_is_recount(stack, api.project, other.project)


def test_receiver_over_quota_is_413_and_nothing_moves(api: Api, stack: ThreadStack) -> None:
    volume = api.available_volume(1)
    created = offer(api, volume["id"])
    other = receiver(api)
    quota = {"quota_set": {"volumes": 0}}
    assert api.put(f"/os-quota-sets/{other.project}", quota).status_code == 200
    assert_fault(accept(other, created["id"], created["auth_key"]), 413, "volumes")
    still = api.volume(volume["id"])
    assert still["status"] == "awaiting-transfer"
    assert still["os-vol-tenant-attr:tenant_id"] == api.project
    assert_usage_is_recount(stack, api.project, other.project)


def test_twenty_parallel_accepts_one_wins(api: Api, stack: ThreadStack) -> None:
    volume = api.available_volume(1)
    created = offer(api, volume["id"])
    other = receiver(api)
    with ThreadPoolExecutor(20) as pool:
        codes = list(
            pool.map(
                lambda _: accept(other, created["id"], created["auth_key"]).status_code, range(20)
            )
        )
    assert codes.count(202) == 1, codes
    assert all(c in (400, 404, 409) for c in codes if c != 202), codes
    assert settled(api, volume["id"])["os-vol-tenant-attr:tenant_id"] == other.project
    assert_usage_is_recount(stack, api.project, other.project)


def test_encrypted_volume_moves_with_a_cloned_key(api: Api, stack: ThreadStack) -> None:
    vtype = encrypted_type(api)
    volume = api.available_volume(1, volume_type=vtype["name"])
    snapshot = available_snapshot(api, volume["id"])
    path = Path(stack.settings.backends[0].options["path"]) / f"volume-{volume['id']}"
    keys = keys_of(stack)
    data = qemu_img.read_luks(
        path, 0, 4096, keys.passphrase(api.project, volume["encryption_key_id"])
    )
    assert_fault(offer_raw(api, volume["id"], version="3.69"), 400, "encrypted volume")
    assert_fault(offer_raw(api, volume["id"], no_snapshots=True), 400, "without its snapshots")
    created = offer(api, volume["id"])
    other = receiver(api)
    assert accept(other, created["id"], created["auth_key"]).status_code == 202
    moved = settled(api, volume["id"])
    new_key = moved["encryption_key_id"]
    assert new_key and new_key != volume["encryption_key_id"]
    snap = api.get(f"/snapshots/{snapshot['id']}").json()["snapshot"]
    assert snap["os-extended-snapshot-attributes:project_id"] == other.project
    assert keys.exists(other.project, new_key)  # the one clone, shared with its snapshot
    assert qemu_img.read_luks(path, 0, 4096, keys.passphrase(other.project, new_key)) == data
    connector = {"host": "compute-b", "initiator": "iqn.b"}
    body = {"attachment": {"volume_uuid": volume["id"], "connector": connector}}
    attached = other.post("/attachments", body)  # the receiver can attach it
    assert attached.status_code == 200, attached.text
    assert attached.json()["attachment"]["connection_info"]["data"]["encrypted"] is True
    poll(
        lambda: not keys.exists(api.project, volume["encryption_key_id"]),
        what="the sender's key deleted",
    )
    address = stack.settings.temporal_address
    save_history(address, volume["id"], "accept_transfer", "AcceptTransfer-encrypted")
    assert_usage_is_recount(stack, api.project, other.project)


def test_a_lost_key_rolls_back_with_a_message_for_the_receiver(
    api: Api, stack: ThreadStack
) -> None:
    vtype = encrypted_type(api)
    volume = api.available_volume(1, volume_type=vtype["name"])
    created = offer(api, volume["id"])
    keys_of(stack).delete(api.project, volume["encryption_key_id"])  # the key manager lost it
    other = receiver(api)
    assert accept(other, created["id"], created["auth_key"]).status_code == 202
    address = stack.settings.temporal_address
    poll(
        lambda: (
            workflows_of(address, volume["id"], "accept_transfer")
            and not workflows_of(address, volume["id"], "accept_transfer", running=True)
        ),
        what="the accept ended",
    )
    back = api.volume(volume["id"])
    assert back["status"] == "awaiting-transfer"
    assert back["os-vol-tenant-attr:tenant_id"] == api.project
    messages = other.get("/messages").json()["messages"]
    assert [m["user_message"] for m in messages if m["resource_uuid"] == volume["id"]] == [
        "accept volume transfer:Volume driver failed to accept the transfer."
    ]
    assert_usage_is_recount(stack, api.project, other.project)
