"""Issue-3 resources through the unmodified `cinder` CLI: types and encryption types,
snapshots and copies, services with backend state, user messages, quotas."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.compat.conftest import Cinder, cinder_for, field, rows
from tests.helpers import ThreadStack, poll


def test_types_keys_and_encryption_types(cinder: Cinder) -> None:
    name = f"fast-{uuid.uuid4().hex[:6]}"
    created = rows(cinder("type-create", name, "--description", "fast tier").stdout)
    assert created[0]["Name"] == name and created[0]["Is_Public"] == "True"
    cinder("type-key", name, "set", "volume_backend_name=file", "multiattach=<is> True")
    listed = cinder("extra-specs-list").stdout
    assert "volume_backend_name" in listed and name in listed

    enc = f"enc-{uuid.uuid4().hex[:6]}"
    cinder("type-create", enc)
    cinder(
        "encryption-type-create",
        "--cipher",
        "aes-xts-plain64",
        "--key-size",
        "256",
        "--control-location",
        "front-end",
        enc,
        "luks",
    )
    type_id = field(cinder("type-show", enc).stdout, "id")
    listed = rows(cinder("encryption-type-list").stdout)
    assert [r["Provider"] for r in listed if r["Volume Type ID"] == type_id] == ["luks"]
    shown = rows(cinder("encryption-type-show", enc).stdout)
    assert shown[0]["Provider"] == "luks" and shown[0]["Cipher"] == "aes-xts-plain64"
    assert shown[0]["Key Size"] == "256" and shown[0]["Control Location"] == "front-end"
    cinder("encryption-type-delete", enc)
    assert rows(cinder("encryption-type-show", enc).stdout) == []
    cinder("type-key", name, "unset", "multiattach")
    cinder("type-delete", enc)


def available(cinder: Cinder, name: str) -> None:
    poll(
        lambda: field(cinder("show", name).stdout, "status") == "available",
        what=f"{name} available",
    )


def test_snapshots_and_copies(cinder: Cinder) -> None:
    volume_id = field(cinder("create", "1", "--name", "orig").stdout, "id")
    available(cinder, "orig")
    snapshot_id = field(cinder("snapshot-create", "--name", "s1", "orig").stdout, "id")
    poll(
        lambda: field(cinder("snapshot-show", snapshot_id).stdout, "status") == "available",
        what="snapshot available",
    )
    assert any(r["ID"] == snapshot_id for r in rows(cinder("snapshot-list").stdout))

    cinder("create", "2", "--snapshot-id", snapshot_id, "--name", "restored")
    cinder("create", "1", "--source-volid", volume_id, "--name", "clone")
    available(cinder, "restored")
    available(cinder, "clone")
    assert field(cinder("show", "restored").stdout, "snapshot_id") == snapshot_id
    assert field(cinder("show", "clone").stdout, "source_volid") == volume_id

    cinder("snapshot-delete", snapshot_id)
    poll(
        lambda: cinder("snapshot-show", snapshot_id, check=False).returncode != 0,
        what="snapshot deleted",
    )


def test_quotas(cinder: Cinder) -> None:
    project = cinder.project  # type: ignore[attr-defined]
    shown = {r["Property"]: r["Value"] for r in rows(cinder("quota-show", project).stdout)}
    assert (shown["volumes"], shown["gigabytes"], shown["per_volume_gigabytes"]) == (
        "10",
        "1000",
        "-1",
    )
    cinder("create", "1", "--name", "counted")
    usage = {r["Type"]: r for r in rows(cinder("quota-usage", project).stdout)}
    assert usage["volumes"]["In_use"] == "1" and usage["volumes"]["Limit"] == "10"
    assert usage["gigabytes"]["In_use"] == "1"
    updated = {
        r["Property"]: r["Value"]
        for r in rows(cinder("quota-update", "--volumes", "1", project).stdout)
    }
    assert updated["volumes"] == "1"
    over = cinder("create", "1", check=False)
    assert over.returncode != 0
    assert "VolumeLimitExceeded: Maximum number of volumes allowed (1) exceeded" in over.stderr
    assert "(HTTP 413)" in over.stderr
    assert len(rows(cinder("list").stdout)) == 1
    cinder("quota-update", "--volumes", "10", project)
    assert {r["Property"]: r["Value"] for r in rows(cinder("quota-show", project).stdout)}[
        "volumes"
    ] == "10"


def test_backend_state_and_messages(own_stack: ThreadStack) -> None:
    """service-list at 3.49 follows the backend directory; a failed create leaves a message."""
    cinder = cinder_for(own_stack)
    interval = own_stack.settings.stats_interval

    def backend_state() -> str:
        listing = rows(cinder("--os-volume-api-version", "3.49", "service-list").stdout)
        (row,) = [r for r in listing if r["Binary"] == "cinder-volume"]
        return row["Backend State"]

    assert backend_state() == "up"
    root = Path(own_stack.settings.backends[0].options["path"])
    moved = root.with_name("away")
    root.rename(moved)
    try:
        poll(lambda: backend_state() == "down", timeout=2 * interval + 2, what="down")
        volume_id = field(cinder("create", "1", "--name", "doomed").stdout, "id")
        poll(lambda: field(cinder("show", volume_id).stdout, "status") == "error", what="error")
        messages = rows(cinder("--os-volume-api-version", "3.3", "message-list").stdout)
        assert [(m["Resource UUID"], m["Event ID"]) for m in messages] == [
            (volume_id, "VOLUME_VOLUME_001_003")
        ]
        assert "schedule allocate volume" in messages[0]["User Message"]
    finally:
        moved.rename(root)
    poll(lambda: backend_state() == "up", timeout=2 * interval + 2, what="up again")
    field(cinder("create", "1", "--name", "fine").stdout, "id")
    available(cinder, "fine")


def test_type_update_description_only(stack: ThreadStack, cinder: Cinder) -> None:
    """cinderclient sends `"name": null` beside a new description (and Horizon through it)."""
    name = f"upd-{uuid.uuid4().hex[:6]}"
    created = cinder("type-create", name).stdout
    type_id = rows(created)[0]["ID"]
    cinder("type-update", "--description", "described", type_id)
    shown = stack.api().get(f"/types/{type_id}").json()["volume_type"]
    assert (shown["name"], shown["description"]) == (name, "described")
