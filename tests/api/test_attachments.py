"""The attachments API: reserve, connect (driver on the backend), complete, disconnect."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from os_brick.initiator import connector as brick

from tests.helpers import Api, ThreadStack, assert_fault, new_project, save_history

CONNECTOR = {
    "initiator": "iqn.1993-08.org.debian:01:abc",
    "ip": "127.0.0.1",
    "platform": "x86_64",
    "host": "compute1",
    "os_type": "linux2",
    "multipath": False,
    "mountpoint": "/dev/vdb",
}


def attach(api: Api, volume_id: str, **fields: object) -> dict:
    body = {"attachment": {"volume_uuid": volume_id, **fields}}
    response = api.post("/attachments", body)
    assert response.status_code == 200, response.text
    return response.json()["attachment"]


def test_local_connector_end_to_end(api: Api, stack: ThreadStack) -> None:
    volume_id = api.available_volume()["id"]
    server = str(uuid.uuid4())
    reserved = attach(api, volume_id, instance_uuid=server)
    assert (reserved["status"], reserved["instance"]) == ("reserved", server)
    assert reserved["attached_at"] == "" and reserved["attach_mode"] == "null"
    assert (api.volume(volume_id) or {})["status"] == "reserved"

    updated = api.put(f"/attachments/{reserved['id']}", {"attachment": {"connector": CONNECTOR}})
    assert updated.status_code == 200, updated.text
    info = updated.json()["attachment"]["connection_info"]
    path = Path(stack.settings.backends[0].options["path"]) / f"volume-{volume_id}"
    assert info["driver_volume_type"] == "local"
    assert info["data"]["device_path"] == str(path)
    assert (info["data"]["access_mode"], info["attachment_id"]) == ("rw", reserved["id"])
    assert updated.json()["attachment"]["status"] == "attaching"
    assert (api.volume(volume_id) or {})["status"] == "attaching"

    done = api.post(f"/attachments/{reserved['id']}/action", {"os-complete": None})
    assert done.status_code == 204
    volume = api.volume(volume_id) or {}
    assert volume["status"] == "in-use"
    (entry,) = volume["attachments"]
    assert (entry["attachment_id"], entry["server_id"]) == (reserved["id"], server)
    assert (entry["device"], entry["host_name"]) == ("/dev/vdb", "compute1")
    assert api.get(f"/attachments/{reserved['id']}").json()["attachment"]["attached_at"]

    local = brick.InitiatorConnector.factory("LOCAL", None)
    device = local.connect_volume(info["data"])
    with open(device["path"], "r+b") as handle:
        handle.seek(1 << 20)
        handle.write(b"written through the attachment")
    with open(path, "rb") as handle:
        handle.seek(1 << 20)
        assert handle.read(30) == b"written through the attachment"
    local.disconnect_volume(info["data"], device)

    assert_fault(api.delete(f"/volumes/{volume_id}"), 400, "must not be migrating, attached")
    removed = api.delete(f"/attachments/{reserved['id']}")
    assert removed.status_code == 200 and removed.json() == {"attachments": []}
    volume = api.volume(volume_id) or {}
    assert (volume["status"], volume["attachments"]) == ("available", [])
    assert_fault(
        api.get(f"/attachments/{reserved['id']}"),
        404,
        f"Volume attachment could not be found with filter: attachment_id = {reserved['id']}.",
    )
    address = stack.settings.temporal_address
    save_history(address, volume_id, "attach", "ConnectAttachment-attaching")
    save_history(address, volume_id, "detach", "DisconnectAttachment-removed")


def test_connect_at_create_and_members_see_no_host(api: Api, member: Api) -> None:
    volume_id = api.available_volume()["id"]
    created = attach(
        member, volume_id, instance_uuid=str(uuid.uuid4()), connector=CONNECTOR, mode="ro"
    )
    assert created["status"] == "attaching" and created["attach_mode"] == "ro"
    assert created["connection_info"]["data"]["access_mode"] == "ro"
    member.post(f"/attachments/{created['id']}/action", {"os-complete": created["id"]})
    (entry,) = (member.volume(volume_id) or {})["attachments"]
    assert entry["host_name"] is None
    assert [a["id"] for a in member.get("/attachments").json()["attachments"]] == [created["id"]]
    assert member.get("/attachments/detail").json()["attachments"][0]["connection_info"]


def test_multiattach_and_same_instance(api: Api) -> None:
    vtype = api.post(
        "/types",
        {
            "volume_type": {
                "name": f"multi-{uuid.uuid4().hex[:6]}",
                "extra_specs": {"multiattach": "<is> True"},
            }
        },
    )
    volume = api.available_volume(volume_type=vtype.json()["volume_type"]["id"])
    assert volume["multiattach"] is True
    servers = [str(uuid.uuid4()), str(uuid.uuid4())]
    first = attach(api, volume["id"], instance_uuid=servers[0], connector=CONNECTOR)
    api.post(f"/attachments/{first['id']}/action", {"os-complete": None})
    second = attach(
        api, volume["id"], instance_uuid=servers[1], connector={**CONNECTOR, "host": "compute2"}
    )
    api.post(f"/attachments/{second['id']}/action", {"os-complete": None})
    assert len((api.volume(volume["id"]) or {})["attachments"]) == 2
    remaining = api.delete(f"/attachments/{first['id']}").json()["attachments"]
    assert [a["id"] for a in remaining] == [second["id"]]
    assert (api.volume(volume["id"]) or {})["status"] == "in-use"

    plain = api.available_volume()["id"]
    one = attach(api, plain, instance_uuid=servers[0], connector=CONNECTOR)
    api.post(f"/attachments/{one['id']}/action", {"os-complete": None})
    assert_fault(
        api.post(
            "/attachments", {"attachment": {"volume_uuid": plain, "instance_uuid": servers[1]}}
        ),
        400,
        f"Volume {plain} status must be available or downloading to reserve, but "
        "the current status is in-use.",
    )
    again = attach(api, plain, instance_uuid=servers[0])  # live migration: same instance
    assert_fault(
        api.put(f"/attachments/{again['id']}", {"attachment": {"connector": CONNECTOR}}),
        409,
        "duplicate connectors detected on volume",
    )


@pytest.mark.parametrize(
    ("body", "version", "code", "fragment"),
    [
        ({"attachment": {}}, "3.27", 400, "'volume_uuid' is a required property"),
        ({"attachment": {"volume_uuid": "not-a-uuid"}}, "3.27", 400, "volume_uuid"),
        (
            {"attachment": {"volume_uuid": str(uuid.uuid4()), "mode": "rw"}},
            "3.53",
            400,
            "'mode' was unexpected",
        ),
        ({"attachment": {"volume_uuid": str(uuid.uuid4()), "mode": "rx"}}, "3.54", 400, "mode"),
        ({"attachment": {"volume_uuid": str(uuid.uuid4())}}, "3.27", 404, "could not be found"),
        (
            {"attachment": {"volume_uuid": str(uuid.uuid4())}},
            "3.26",
            404,
            "The resource could not be found.",
        ),
    ],
)
def test_bad_creates(api: Api, body: dict, version: str, code: int, fragment: str) -> None:
    assert_fault(api.post("/attachments", body, version=version), code, fragment)


def test_other_errors(api: Api, own_stack: ThreadStack) -> None:
    volume_id = api.available_volume()["id"]
    reserved = attach(api, volume_id)
    base = f"/attachments/{reserved['id']}"
    assert_fault(api.put(base, {"attachment": {"connector": {}}}), 400, "attachment.connector")
    assert_fault(api.post(f"{base}/action", {"os-complete": None}, version="3.43"), 404)
    assert_fault(api.put("/attachments/nope", {"attachment": {"connector": CONNECTOR}}), 404)
    stranger = api.as_user("bob", project=new_project())
    assert_fault(stranger.get(base), 404)
    assert_fault(stranger.delete(base), 404)
    reader = api.as_user("rita", roles="reader")
    assert_fault(reader.post("/attachments", {"attachment": {"volume_uuid": volume_id}}), 403)
    assert api.delete(base).json() == {"attachments": []}
    assert (api.volume(volume_id) or {})["status"] == "available"

    other = own_stack.api()
    (backend,) = [
        s for s in other.get("/os-services").json()["services"] if s["binary"] == "cinder-volume"
    ]
    other.put("/os-services/disable", {"host": backend["host"], "binary": "cinder-volume"})
    broken = other.wait_status(other.create_volume()["id"], "error")
    assert_fault(
        other.post("/attachments", {"attachment": {"volume_uuid": broken["id"]}}),
        400,
        "Volume attachments can not be created if the volume is in an error state.",
    )


def test_driver_failure_on_connect(own_stack: ThreadStack) -> None:
    api = own_stack.api()
    volume_id = api.available_volume()["id"]
    (Path(own_stack.settings.backends[0].options["path"]) / f"volume-{volume_id}").unlink()
    reserved = attach(api, volume_id)
    failed = api.put(f"/attachments/{reserved['id']}", {"attachment": {"connector": CONNECTOR}})
    assert_fault(failed, 500, "Unable to update attachment (volume file")
    assert (
        api.get(f"/attachments/{reserved['id']}").json()["attachment"]["status"]
        == "error_attaching"
    )
    assert (api.volume(volume_id) or {})["status"] == "available"
    (message,) = api.get("/messages").json()["messages"]
    assert message["user_message"] == "update attachment:Failed to attach volume."
    address = own_stack.settings.temporal_address
    save_history(address, volume_id, "attach", "ConnectAttachment-error")
