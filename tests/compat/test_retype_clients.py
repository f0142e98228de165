"""Retype through the unmodified clients: `cinder retype`, `openstack volume set --type`,
openstacksdk `retype_volume`, against a stack with two file backends."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openstack
import pytest

from tests.compat.conftest import CLOUD, cinder_for, field, openstack_env
from tests.conftest import Databases
from tests.helpers import ThreadStack, assert_usage_is_recount, new_project, stack_settings
from tests.retyping import (
    MIB,
    guest_digest,
    new_type,
    settled,
    two_backends,
    wait_retype_ended,
    write_guest,
)

OPENSTACK = str(Path(sys.executable).parent / "openstack")


@pytest.fixture(scope="module")
def two(
    tmp_path_factory: pytest.TempPathFactory, temporal, databases: Databases
) -> Iterator[ThreadStack]:
    tmp = tmp_path_factory.mktemp("clients-two-backends")
    settings = stack_settings(
        tmp, databases.new("sqlite"), temporal.address, backends=two_backends(tmp)
    )
    running = ThreadStack(settings).start()
    yield running
    running.stop()


def test_cinder_retype_in_place_and_by_migration(two: ThreadStack) -> None:
    cinder = cinder_for(two)
    api = two.api(project=cinder.project)  # type: ignore[attr-defined]
    gold, gold_b, silver = (
        new_type(api, "gold"),
        new_type(api, "gold", **{"file:t": "b"}),
        (new_type(api, "silver")),
    )
    volume = api.available_volume(1, volume_type=gold["name"])
    cinder("retype", "--migration-policy", "on-demand", volume["id"], gold_b["name"])
    done = settled(api, volume["id"])
    assert done["volume_type"] == gold_b["name"] and done["os-vol-mig-status-attr:name_id"] is None
    write_guest(two, done, 1 * MIB, os.urandom(MIB))
    digest = guest_digest(two, done, 4 * MIB)
    cinder("retype", "--migration-policy", "on-demand", volume["id"], silver["name"])
    wait_retype_ended(two, volume["id"])
    shown = cinder("show", volume["id"]).stdout
    assert field(shown, "volume_type") == silver["name"]
    assert "@silver" in field(shown, "os-vol-host-attr:host")
    assert guest_digest(two, api.volume(volume["id"]), 4 * MIB) == digest
    same = cinder("retype", volume["id"], silver["name"], check=False)
    assert (
        same.returncode != 0 and "requested type has to be different" in same.stdout + same.stderr
    )
    missing = cinder("retype", volume["id"], "no-such-type", check=False)
    assert (
        "Volume type with name no-such-type could not be found." in missing.stdout + missing.stderr
    )
    assert_usage_is_recount(two, api.project)


def test_openstack_cli_and_sdk_retype_with_never(two: ThreadStack, tmp_path: Path) -> None:
    project = new_project()
    api = two.api(project=project)
    gold, gold_b = new_type(api, "gold"), new_type(api, "gold", **{"file:t": "b"})
    gold_c = new_type(api, "gold", **{"file:t": "c"})
    volume = api.available_volume(1, volume_type=gold["name"])
    env = openstack_env(two, project, tmp_path)
    done = subprocess.run(
        [OPENSTACK, "--os-cloud", CLOUD, "volume", "set", "--type", gold_b["name"],
         "--migration-policy", "never", volume["id"]],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert settled(api, volume["id"])["volume_type"] == gold_b["name"]

    conn = openstack.connect(
        auth_type="admin_token",
        auth={"endpoint": f"{two.url}/v3", "token": f"admin:{project}"},
        block_storage_api_version="3.71",
        load_envvars=False,
    )
    conn.block_storage.retype_volume(volume["id"], gold_c["id"], migration_policy="never")
    wait_retype_ended(two, volume["id"])
    assert conn.block_storage.get_volume(volume["id"]).volume_type == gold_c["name"]
    assert_usage_is_recount(two, project)
