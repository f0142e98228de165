"""Helpers of the retype tests: two-backend stacks' files, types, guest bytes, quota."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from cinderflow.db import volumes as volume_db
from cinderflow.db.engine import Database
from cinderflow.drivers import qemu_img
from cinderflow.keys.service import KeyService, key_service
from cinderflow.settings import BackendConfig
from tests.helpers import (
    Api,
    ThreadStack,
    poll,
    workflows_of,
)


def two_backends(tmp: Path) -> list[BackendConfig]:
    """Backends `gold` and `silver`, each a directory under `tmp`."""
    return [
        BackendConfig(name=name, options={"path": str(tmp / name), "luks_iter_time_ms": 10})
        for name in ("gold", "silver")
    ]


COPY_PROGRESS = "driver.copy_volume_data.progress"
LUKS = {"provider": "luks", "cipher": "aes-xts-plain64", "key_size": 256}
MIB = 1 << 20


def root(stack: ThreadStack, backend: str) -> Path:
    return Path(next(b for b in stack.settings.backends if b.name == backend).options["path"])


def new_type(api: Api, backend: str | None, encrypted: bool = False, **specs: str) -> dict:
    name = f"{backend or 'any'}-{uuid.uuid4().hex[:6]}"
    extra = {**({"volume_backend_name": backend} if backend else {}), **specs}
    body = {"volume_type": {"name": name, "extra_specs": extra}}
    vtype = api.post("/types", body).json()["volume_type"]
    if encrypted:
        enc = {"encryption": {**LUKS, "control_location": "front-end"}}
        assert api.post(f"/types/{vtype['id']}/encryption", enc).status_code == 200
    return vtype


def backend_files(stack: ThreadStack, backend: str) -> set[Path]:
    """What the backend directory holds (its stats probes aside)."""
    return {p for p in root(stack, backend).iterdir() if not p.name.startswith(".probe-")}


def backend_file(stack: ThreadStack, volume: dict) -> Path:
    backend = volume["os-vol-host-attr:host"].split("@")[1].split("#")[0]
    name = volume["os-vol-mig-status-attr:name_id"] or volume["id"]
    return root(stack, backend) / f"volume-{name}"


def keys_of(stack: ThreadStack) -> KeyService:
    return key_service(stack.settings, Database(stack.settings.db_url))


def write_guest(stack: ThreadStack, volume: dict, offset: int, data: bytes) -> None:
    """Write as the guest would (through LUKS when encrypted)."""
    path = backend_file(stack, volume)
    if not volume["encrypted"]:
        with open(path, "r+b") as handle:
            handle.seek(offset)
            handle.write(data)
        return
    plain = path.with_name("plain.raw")
    plain.write_bytes(b"\0" * offset + data)
    secret = keys_of(stack).passphrase(
        volume["os-vol-tenant-attr:tenant_id"], volume["encryption_key_id"]
    )
    qemu_img.convert_into(plain, path, target_secret=secret)
    plain.unlink()


def passphrase(stack: ThreadStack, volume: dict) -> bytes:
    return keys_of(stack).passphrase(
        volume["os-vol-tenant-attr:tenant_id"], volume["encryption_key_id"]
    )


def guest_digest(stack: ThreadStack, volume: dict, length: int) -> str:
    """A checksum of the first `length` guest-visible bytes."""
    path = backend_file(stack, volume)
    if not volume["encrypted"]:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read(length)).hexdigest()
    secret = keys_of(stack).passphrase(
        volume["os-vol-tenant-attr:tenant_id"], volume["encryption_key_id"]
    )
    return hashlib.sha256(qemu_img.read_luks(path, 0, length, secret)).hexdigest()


def message_of(api: Api, volume_id: str) -> str:
    """The user message recorded about the volume (exactly one)."""
    (message,) = [
        m for m in api.get("/messages").json()["messages"] if m["resource_uuid"] == volume_id
    ]
    return message["user_message"]


def retype(api: Api, volume_id: str, new: str, policy: str | None = "on-demand"):
    body = {"os-retype": {"new_type": new, **({"migration_policy": policy} if policy else {})}}
    return api.post(f"/volumes/{volume_id}/action", body)


def settled(api: Api, volume_id: str) -> dict:
    """The volume once its retype has ended (no workflow owns it)."""
    return api.wait_status(volume_id, "available", "in-use", "error")


def wait_retype_ended(stack: ThreadStack, volume_id: str, operation: str = "retype") -> str:
    """The id of the volume's last `operation` workflow, once none is running."""
    address = stack.settings.temporal_address
    workflow_id = poll(lambda: workflows_of(address, volume_id, operation))[-1]
    poll(
        lambda: not workflows_of(address, volume_id, operation, running=True),
        what=f"{operation} ended",
    )
    return workflow_id


def key_exists(keys: KeyService, project: str, key_id: str) -> bool:
    try:
        keys.passphrase(project, key_id)
    except Exception:
        return False
    return True


def migration_key(stack: ThreadStack, volume_id: str) -> str | None:
    db = Database(stack.settings.db_url)
    try:
        with db.read() as session:
            return volume_db.admin_metadata_of(session, volume_id).get("migration_key_id")
    finally:
        db.dispose()


def progress_of(api: Api, volume_id: str) -> str | None:
    return (
        api.get(f"/volumes/{volume_id}", version="3.72").json()["volume"].get("migration_progress")
    )
