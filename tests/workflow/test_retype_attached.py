"""Retype of an attached volume by migration: the compute (a real HTTP server holding a real,
paused QEMU guest) swaps the guest's disk into the destination with QMP blockdev-mirror and
answers os-migrate_volume_completion, as Nova's swap volume does for Cinder."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from cinderflow.temporal.devserver import DevServer
from tests.conftest import Databases
from tests.fake_compute import CONNECTOR, FakeCompute, needs_qemu
from tests.helpers import (
    Api,
    ThreadStack,
    assert_fault,
    assert_usage_is_recount,
    poll,
    save_history,
    stack_settings,
)
from tests.retyping import (
    MIB,
    backend_file,
    backend_files,
    guest_digest,
    message_of,
    new_type,
    retype,
    root,
    two_backends,
    wait_retype_ended,
    write_guest,
)


@pytest.fixture(scope="module")
def cloud(
    tmp_path_factory: pytest.TempPathFactory, temporal: DevServer, databases: Databases
) -> Iterator[tuple[ThreadStack, FakeCompute]]:
    tmp = tmp_path_factory.mktemp("attached-retype")
    base = stack_settings(
        tmp, databases.new("sqlite"), temporal.address, backends=two_backends(tmp)
    )
    compute = FakeCompute(f"http://127.0.0.1:{base.api_port}").start()
    settings = base.model_copy(
        update={"compute_endpoint": compute.url, "migration_completion_timeout": 60.0}
    )
    stack = ThreadStack(settings).start()
    yield stack, compute
    stack.stop()
    compute.stop()


def attached(api: Api, volume_type: str) -> tuple[dict, str, str]:
    """An `in-use` volume of `volume_type` attached to a new server: (volume, server,
    attachment id)."""
    volume, server = api.available_volume(1, volume_type=volume_type), str(uuid.uuid4())
    body = {"volume_uuid": volume["id"], "instance_uuid": server, "connector": CONNECTOR}
    created = api.post("/attachments", {"attachment": body})
    assert created.status_code == 200, created.text
    attachment_id = created.json()["attachment"]["id"]
    assert (
        api.post(f"/attachments/{attachment_id}/action", {"os-complete": None}).status_code == 204
    )
    return api.volume(volume["id"]) or {}, server, attachment_id


@needs_qemu
def test_the_compute_swaps_the_guest_disk_to_the_new_backend(
    cloud: tuple[ThreadStack, FakeCompute],
) -> None:
    stack, compute = cloud
    api = stack.api()
    compute.reset(api.project, "complete")
    gold, silver = new_type(api, "gold"), new_type(api, "silver")
    volume, server, old_attachment = attached(api, gold["name"])
    write_guest(stack, volume, 1 * MIB, os.urandom(2 * MIB))
    digest = guest_digest(stack, volume, 4 * MIB)
    old_file = backend_file(stack, volume)
    guest = compute.hold(volume["id"], old_file)
    assert retype(api, volume["id"], silver["name"]).status_code == 202

    poll(lambda: compute.swapped, timeout=120, what="the compute's completion")
    (answer,) = compute.swapped
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"save_volume_id": volume["id"]}
    ((swapped_server, old_id, target_id),) = compute.swaps
    assert (swapped_server, old_id) == (server, volume["id"]) and target_id != volume["id"]
    wait_retype_ended(stack, volume["id"])

    done = api.volume(volume["id"]) or {}
    assert done["status"] == "in-use" and done["volume_type"] == silver["name"]
    assert done["os-vol-mig-status-attr:migstat"] == "success"
    assert done["os-vol-mig-status-attr:name_id"] == target_id
    assert "@silver" in done["os-vol-host-attr:host"]
    new_file = root(stack, "silver") / f"volume-{target_id}"
    assert guest.disk_file() == str(new_file)  # the running guest's disk is the new file
    ((entry),) = done["attachments"]
    assert entry["server_id"] == server and entry["attachment_id"] != old_attachment
    assert api.get(f"/attachments/{old_attachment}").status_code == 404
    assert not old_file.exists()
    assert api.get(f"/volumes/{target_id}").status_code == 404  # the temporary row is gone
    assert guest_digest(stack, done, 4 * MIB) == digest
    assert not (root(stack, "gold") / ".exports" / old_file.name).exists()
    assert_usage_is_recount(stack, api.project)
    save_history(stack.settings.temporal_address, volume["id"], "retype", "RetypeVolume-swap")


def test_a_compute_error_rolls_back(cloud: tuple[ThreadStack, FakeCompute]) -> None:
    stack, compute = cloud
    api = stack.api()
    compute.reset(api.project, "error")
    gold, silver = new_type(api, "gold"), new_type(api, "silver")
    volume, _, attachment = attached(api, gold["name"])
    silver_files = backend_files(stack, "silver")
    assert retype(api, volume["id"], silver["name"]).status_code == 202
    poll(lambda: compute.swapped, what="the compute's error")
    assert compute.swapped[0].json() == {"save_volume_id": volume["id"]}
    wait_retype_ended(stack, volume["id"])
    back = api.volume(volume["id"]) or {}
    assert back["status"] == "in-use" and back["volume_type"] == gold["name"]
    assert back["os-vol-mig-status-attr:migstat"] == "error"
    assert [a["attachment_id"] for a in back["attachments"]] == [attachment]
    assert backend_files(stack, "silver") == silver_files
    (_, _, target_id) = compute.swaps[0]
    assert api.get(f"/volumes/{target_id}").status_code == 404
    assert "retype volume:" in message_of(api, volume["id"])
    assert_usage_is_recount(stack, api.project)


def test_completion_rules(cloud: tuple[ThreadStack, FakeCompute]) -> None:
    stack, compute = cloud
    api = stack.api()
    compute.reset(api.project, "silent")
    gold, silver = new_type(api, "gold"), new_type(api, "silver")
    volume, _, _ = attached(api, gold["name"])
    action = f"/volumes/{volume['id']}/action"

    def completion(new_volume: str, who: Api = api, error: bool = False):
        body = {"os-migrate_volume_completion": {"new_volume": new_volume, "error": error}}
        return who.post(action, body)

    assert_fault(completion(volume["id"]), 400, "Source volume not mid-migration.")
    assert_fault(completion("not-a-uuid"), 400, "new_volume")
    assert retype(api, volume["id"], silver["name"]).status_code == 202
    poll(lambda: compute.swaps, what="the swap asked for")
    (_, _, target_id) = compute.swaps[0]
    member = api.as_user("alice")
    assert completion(target_id, who=member).status_code == 403
    assert_fault(completion(volume["id"]), 400, f"expected target:{volume['id']}")
    assert_fault(api.delete(f"/volumes/{target_id}"), 400, "busy")
    answer = completion(target_id, error=True)
    assert answer.status_code == 200 and answer.json() == {"save_volume_id": volume["id"]}
    wait_retype_ended(stack, volume["id"])
    assert (api.volume(volume["id"]) or {})["volume_type"] == gold["name"]
    assert_fault(completion(target_id), 404)
