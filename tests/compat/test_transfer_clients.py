"""Volume transfers through the unmodified clients: the `cinder` CLI (both route families),
openstacksdk and the `openstack` CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openstack

from tests.compat.conftest import CLOUD, Cinder, cinder_for, field, openstack_env, rows
from tests.helpers import ThreadStack, new_project, poll

OPENSTACK = str(Path(sys.executable).parent / "openstack")


def test_cinder_transfer_round_trip(stack: ThreadStack, cinder: Cinder) -> None:
    api = stack.api(project=cinder.project)  # type: ignore[attr-defined]
    volume = api.available_volume(1)
    snapshot = api.post("/snapshots", {"snapshot": {"volume_id": volume["id"]}}).json()
    poll(
        lambda: (
            api.get(f"/snapshots/{snapshot['snapshot']['id']}").json()["snapshot"]["status"]
            == "available"
        )
    )
    created = cinder("transfer-create", "--name", "t1", volume["id"]).stdout
    assert field(created, "no_snapshots") == "False" and field(created, "accepted") == "False"
    assert field(created, "source_project_id") == api.project
    auth_key, transfer_id = field(created, "auth_key"), field(created, "id")
    assert api.volume(volume["id"])["status"] == "awaiting-transfer"
    assert [r["ID"] for r in rows(cinder("transfer-list").stdout)] == [transfer_id]
    assert field(cinder("transfer-show", transfer_id).stdout, "volume_id") == volume["id"]
    legacy = cinder("--os-volume-api-version", "3.0", "transfer-list").stdout
    assert [r["ID"] for r in rows(legacy)] == [transfer_id]

    receiver = cinder_for(stack, new_project())
    wrong = receiver("transfer-accept", transfer_id, "0" * 16, check=False)
    assert wrong.returncode != 0 and "Invalid auth key" in wrong.stdout + wrong.stderr
    receiver("transfer-accept", transfer_id, auth_key)
    poll(
        lambda: api.volume(volume["id"])["os-vol-tenant-attr:tenant_id"] == receiver.project,  # type: ignore[attr-defined]
        what="the volume moved",
    )
    assert rows(cinder("transfer-list").stdout) == []

    second = stack.api(project=receiver.project).available_volume(1)  # type: ignore[attr-defined]
    offered = receiver("transfer-create", second["id"]).stdout
    receiver("transfer-delete", field(offered, "id"))
    assert stack.api(project=receiver.project).volume(second["id"])["status"] == "available"  # type: ignore[attr-defined]


def test_sdk_and_openstack_cli(stack: ThreadStack, tmp_path: Path) -> None:
    sender, taker = new_project(), new_project()
    api = stack.api(project=sender)
    volume = api.available_volume(1)

    def connect(project: str):
        return openstack.connect(
            auth_type="admin_token",
            auth={"endpoint": f"{stack.url}/v3", "token": f"admin:{project}"},
            block_storage_api_version="3.71",
            load_envvars=False,
        )

    conn = connect(sender)
    transfer = conn.block_storage.create_transfer(volume_id=volume["id"], name="sdk")
    assert transfer.auth_key and transfer.volume_id == volume["id"]
    assert [t.id for t in conn.block_storage.transfers()] == [transfer.id]
    env = openstack_env(stack, sender, tmp_path)
    listed = subprocess.run(
        [OPENSTACK, "--os-cloud", CLOUD, "volume", "transfer", "request", "list", "-f", "value",
         "-c", "ID"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [transfer.id]
    connect(taker).block_storage.accept_transfer(transfer.id, transfer.auth_key)
    poll(
        lambda: api.volume(volume["id"])["os-vol-tenant-attr:tenant_id"] == taker,
        what="the volume moved",
    )
