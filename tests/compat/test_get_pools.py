"""`cinder get-pools` and `openstack volume backend pool list` against a real stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.compat.conftest import CLOUD, Cinder, field, openstack_env
from tests.helpers import ThreadStack, new_project, poll

OPENSTACK = str(Path(sys.executable).parent / "openstack")


def test_cinder_get_pools(cinder: Cinder, stack: ThreadStack) -> None:
    pool = f"{stack.settings.host}@file#file"
    volume_id = field(cinder("create", "1").stdout, "id")
    poll(lambda: field(cinder("show", volume_id).stdout, "status") == "available", what="volume")
    assert field(cinder("show", volume_id).stdout, "os-vol-host-attr:host") == pool
    plain = cinder("get-pools").stdout
    assert field(plain, "name") == pool
    assert "total_capacity_gb" not in plain

    detail = cinder("get-pools", "--detail").stdout
    assert field(detail, "name") == pool
    assert (field(detail, "volume_backend_name"), field(detail, "pool_name")) == ("file", "file")
    total = float(field(detail, "total_capacity_gb"))
    assert 0 < float(field(detail, "free_capacity_gb")) <= total
    assert float(field(detail, "allocated_capacity_gb")) >= 1  # the volume above
    assert field(detail, "thin_provisioning_support") == "True"
    assert field(detail, "storage_protocol") and field(detail, "timestamp")


def test_openstack_volume_backend_pool_list(stack: ThreadStack, tmp_path: Path) -> None:
    env = openstack_env(stack, new_project(), tmp_path)
    done = subprocess.run(
        [OPENSTACK, "--os-cloud", CLOUD, "volume", "backend", "pool", "list", "--long",
         "-f", "json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (pool,) = json.loads(done.stdout)
    assert pool["Name"] == f"{stack.settings.host}@file#file"
    assert pool["Capabilities"]["volume_backend_name"] == "file"
    assert pool["Capabilities"]["total_capacity_gb"] > 0
