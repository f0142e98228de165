"""Encrypted volume types on the file backend: LUKS1 files, keys created, cloned and deleted."""

from __future__ import annotations

import uuid
from pathlib import Path

from cinderflow.db.engine import Database
from cinderflow.drivers import qemu_img
from cinderflow.keys.service import KeyService, key_service
from tests.helpers import Api, ThreadStack, assert_fault, new_project, poll, save_history

LUKS = {
    "provider": "luks",
    "cipher": "aes-xts-plain64",
    "key_size": 256,
    "control_location": "front-end",
}


def encrypted_type(api: Api, provider: str = "luks") -> dict:
    name = f"enc-{uuid.uuid4().hex[:6]}"
    vtype = api.post("/types", {"volume_type": {"name": name}}).json()["volume_type"]
    body = {"encryption": {**LUKS, "provider": provider}}
    assert api.post(f"/types/{vtype['id']}/encryption", body).status_code == 200
    return vtype


def keys_of(stack: ThreadStack) -> KeyService:
    return key_service(stack.settings, Database(stack.settings.db_url))


def test_encrypted_volume_snapshot_restore_and_delete(api: Api, stack: ThreadStack) -> None:
    keys, root = keys_of(stack), Path(stack.settings.backends[0].options["path"])
    vtype = encrypted_type(api)
    volume = api.available_volume(1, volume_type=vtype["name"])
    assert volume["encrypted"] is True and volume["encryption_key_id"]
    path = root / f"volume-{volume['id']}"
    assert qemu_img.info(path, "luks")["virtual-size"] == 1 << 30
    secret = keys.passphrase(api.project, volume["encryption_key_id"])
    original = qemu_img.read_luks(path, 4096, 64, secret)
    save_history(stack.settings.temporal_address, volume["id"], "create", "CreateVolume-encrypted")

    snap = api.post("/snapshots", {"snapshot": {"volume_id": volume["id"]}}).json()["snapshot"]
    poll(
        lambda: api.get(f"/snapshots/{snap['id']}").json()["snapshot"]["status"] == "available",
        what="snapshot available",
    )
    restored = api.available_volume(2, snapshot_id=snap["id"])
    assert restored["encrypted"] and restored["encryption_key_id"] != volume["encryption_key_id"]
    restored_path = root / f"volume-{restored['id']}"
    assert qemu_img.info(restored_path, "luks")["virtual-size"] == 2 << 30
    restored_secret = keys.passphrase(api.project, restored["encryption_key_id"])
    assert qemu_img.read_luks(restored_path, 4096, 64, restored_secret) == original

    assert_fault(
        api.post("/volumes", {"volume": {"snapshot_id": snap["id"], "volume_type": "__DEFAULT__"}}),
        400,
        "must be encrypted exactly when the snapshot's type is",
    )

    for vol in (restored, volume):
        api.delete(f"/volumes/{vol['id']}", params={"cascade": "true"})
        api.wait_gone(vol["id"])
        assert not keys.exists(api.project, vol["encryption_key_id"])


def test_luks2_type_finds_no_backend(api: Api) -> None:
    vtype = encrypted_type(api, "luks2")
    volume = api.wait_status(api.create_volume(1, volume_type=vtype["id"])["id"], "error")
    assert volume["encryption_key_id"] is None
    (message,) = api.get("/messages").json()["messages"]
    assert message["event_id"] == "VOLUME_VOLUME_001_003"


def test_an_admin_clones_another_projects_encrypted_volume(api: Api, stack: ThreadStack) -> None:
    """Probe finding M4: an admin's clone or create-from-snapshot of another project's
    encrypted volume stayed `creating` forever (the source key was looked up in the new
    volume's project). The new volumes belong to the admin's project, with their own key
    cloned from the source's."""
    keys, root = keys_of(stack), Path(stack.settings.backends[0].options["path"])
    vtype = encrypted_type(api)
    owner = api.as_user("alice")
    volume = owner.available_volume(1, volume_type=vtype["id"])
    secret = keys.passphrase(api.project, volume["encryption_key_id"])
    original = qemu_img.read_luks(root / f"volume-{volume['id']}", 4096, 64, secret)
    snap = owner.post("/snapshots", {"snapshot": {"volume_id": volume["id"]}}).json()["snapshot"]
    poll(
        lambda: owner.get(f"/snapshots/{snap['id']}").json()["snapshot"]["status"] == "available",
        what="snapshot available",
    )
    admin = api.as_user("admin", project=new_project())
    for source in ({"source_volid": volume["id"]}, {"snapshot_id": snap["id"]}):
        made = admin.available_volume(1, **source)
        assert made["encrypted"] and made["encryption_key_id"] != volume["encryption_key_id"]
        assert made["os-vol-tenant-attr:tenant_id"] == admin.project
        own = keys.passphrase(admin.project, made["encryption_key_id"])
        assert qemu_img.read_luks(root / f"volume-{made['id']}", 4096, 64, own) == original
        admin.delete(f"/volumes/{made['id']}")
        admin.wait_gone(made["id"])
    assert keys.exists(api.project, volume["encryption_key_id"])


def test_encrypted_is_true_from_the_create_response_on(api: Api) -> None:
    """Issue 14's newcomer finding: the create response said `encrypted: false` (the key is
    made by the workflow, after the response)."""
    vtype = encrypted_type(api)
    created = api.post("/volumes", {"volume": {"size": 1, "volume_type": vtype["name"]}})
    assert created.status_code == 202 and created.json()["volume"]["encrypted"] is True
    volume_id = created.json()["volume"]["id"]
    listed = api.get("/volumes/detail").json()["volumes"]
    assert [v["encrypted"] for v in listed if v["id"] == volume_id] == [True]
    plain = api.post("/volumes", {"volume": {"size": 1}}).json()["volume"]
    assert plain["encrypted"] is False
    for ident in (volume_id, plain["id"]):
        api.wait_status(ident, "available")
        api.delete(f"/volumes/{ident}")
