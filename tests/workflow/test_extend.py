"""Extend: offline, online, and online with the compute's completion (os-extend_volume_completion).

The compute is a real HTTP server (tests/fake_compute.py); a volume "held open by the
hypervisor" is held by a real paused QEMU guest, which only QMP `block_resize` can grow.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from cinderflow.drivers import qemu_img
from cinderflow.payloads import ExtendCompletion
from cinderflow.settings import BackendConfig
from cinderflow.temporal.client import connect
from cinderflow.temporal.devserver import DevServer
from cinderflow.workflows.extend_volume import ExtendVolume
from tests.conftest import Databases
from tests.fake_compute import FakeCompute, Guest, needs_qemu
from tests.helpers import (
    Api,
    Process,
    ThreadStack,
    assert_fault,
    history_steps,
    poll,
    save_history,
    stack_settings,
    wait_backends_reported,
    workflows_of,
)

GIB = 1 << 30
CONNECTOR = {"initiator": "iqn.2026-11.test:compute", "host": "compute1", "ip": "127.0.0.1"}


@dataclass
class Cloud:
    """A cinderflow stack whose compute endpoint is a FakeCompute."""

    stack: ThreadStack
    compute: FakeCompute

    def api(self, mode: str = "complete") -> Api:
        """An admin on a fresh project whose servers the compute answers for as `mode`."""
        api = self.stack.api()
        self.compute.reset(api.project, mode)
        return api

    def file(self, volume_id: str) -> Path:
        return Path(self.stack.settings.backends[0].options["path"]) / f"volume-{volume_id}"


def _cloud(
    tmp: Path, temporal: DevServer, databases: Databases, **settings: Any
) -> Iterator[Cloud]:
    base = stack_settings(tmp, databases.new("sqlite"), temporal.address, **settings)
    compute = FakeCompute(f"http://127.0.0.1:{base.api_port}").start()
    stack = ThreadStack(base.model_copy(update={"compute_endpoint": compute.url})).start()
    yield Cloud(stack, compute)
    stack.stop()
    compute.stop()


@pytest.fixture(scope="module")
def cloud(
    tmp_path_factory: pytest.TempPathFactory, temporal: DevServer, databases: Databases
) -> Iterator[Cloud]:
    yield from _cloud(
        tmp_path_factory.mktemp("cloud"),
        temporal,
        databases,
        compute_completion_api_version="2.97",
    )


@pytest.fixture(scope="module")
def impatient_cloud(
    tmp_path_factory: pytest.TempPathFactory, temporal: DevServer, databases: Databases
) -> Iterator[Cloud]:
    """Waits only 2 s for a completion."""
    yield from _cloud(
        tmp_path_factory.mktemp("impatient"), temporal, databases, extend_completion_timeout=2.0
    )


def attached(api: Api, size: int = 1) -> tuple[str, str]:
    """An `in-use` volume attached to a new server: (volume id, server id)."""
    volume_id, server = api.available_volume(size)["id"], str(uuid.uuid4())
    body = {"volume_uuid": volume_id, "instance_uuid": server, "connector": CONNECTOR}
    created = api.post("/attachments", {"attachment": body})
    assert created.status_code == 200, created.text
    action = f"/attachments/{created.json()['attachment']['id']}/action"
    assert api.post(action, {"os-complete": None}).status_code == 204
    assert (api.volume(volume_id) or {})["status"] == "in-use"
    return volume_id, server


def extend(api: Api, volume_id: str, new_size: int, version: str = "3.42") -> None:
    response = api.post(
        f"/volumes/{volume_id}/action", {"os-extend": {"new_size": new_size}}, version=version
    )
    assert response.status_code == 202, response.text


def complete(api: Api, volume_id: str, error: object) -> Any:
    return api.post(
        f"/volumes/{volume_id}/action", {"os-extend_volume_completion": {"error": error}}
    )


def gigabytes(api: Api) -> dict[str, int]:
    response = api.get(f"/os-quota-sets/{api.project}", params={"usage": "true"})
    assert response.status_code == 200, response.text
    usage = response.json()["quota_set"]["gigabytes"]
    return {"in_use": usage["in_use"], "reserved": usage["reserved"]}


def messages(api: Api, volume_id: str) -> list[dict[str, Any]]:
    listed = api.get("/messages", version="3.5").json()["messages"]
    return [m for m in listed if m["resource_uuid"] == volume_id]


def extend_workflows(address: str, volume_id: str) -> list[str]:
    return workflows_of(address, volume_id, "extend")


# Offline --------------------------------------------------------------------------------------


def test_offline_extend_commits_the_reservation(api: Api, stack: ThreadStack) -> None:
    volume_id = api.available_volume(1)["id"]
    assert gigabytes(api) == {"in_use": 1, "reserved": 0}
    extend(api, volume_id, 2, version="3.0")
    volume = api.wait_status(volume_id, "available")
    assert volume["size"] == 2
    assert gigabytes(api) == {"in_use": 2, "reserved": 0}
    path = Path(stack.settings.backends[0].options["path"]) / f"volume-{volume_id}"
    assert qemu_img.info(path)["virtual-size"] == 2 * GIB
    assert "extend_new_size" not in volume["metadata"]

    (workflow_id,) = poll(lambda: extend_workflows(stack.settings.temporal_address, volume_id))
    save_history(stack.settings.temporal_address, volume_id, "extend", "ExtendVolume-offline")
    steps = history_steps(stack.settings.temporal_address, workflow_id)
    # the API read the plan while handing the volume over: no read step of its own
    assert steps == ["driver.extend_volume", "operation.finish"]


def test_encrypted_volume_grows_through_luks(api: Api, stack: ThreadStack) -> None:
    vtype = api.post("/types", {"volume_type": {"name": f"enc-{uuid.uuid4().hex[:6]}"}}).json()
    spec = {"provider": "luks", "cipher": "aes-xts-plain64", "key_size": 256}
    created = api.post(
        f"/types/{vtype['volume_type']['id']}/encryption",
        {"encryption": {**spec, "control_location": "front-end"}},
    )
    assert created.status_code == 200, created.text
    volume_id = api.available_volume(1, volume_type=vtype["volume_type"]["name"])["id"]
    extend(api, volume_id, 3)
    assert api.wait_status(volume_id, "available")["size"] == 3
    path = Path(stack.settings.backends[0].options["path"]) / f"volume-{volume_id}"
    assert qemu_img.info(path, "luks")["virtual-size"] == 3 * GIB


@pytest.mark.parametrize(
    ("limits", "new_size", "fragment"),
    [
        ({"gigabytes": 2}, 3, "Requested volume or snapshot exceeds allowed gigabytes quota"),
        ({"per_volume_gigabytes": 2}, 3, "is larger than maximum allowed limit 2G"),
    ],
)
def test_over_quota_is_413_and_changes_nothing(
    api: Api, limits: dict[str, int], new_size: int, fragment: str
) -> None:
    volume_id = api.available_volume(1)["id"]
    updated = api.put(f"/os-quota-sets/{api.project}", {"quota_set": limits})
    assert updated.status_code == 200, updated.text
    response = api.post(f"/volumes/{volume_id}/action", {"os-extend": {"new_size": new_size}})
    assert_fault(response, 413, fragment)
    volume = api.volume(volume_id) or {}
    assert (volume["status"], volume["size"]) == ("available", 1)
    assert gigabytes(api) == {"in_use": 1, "reserved": 0}


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ({"os-extend": {"new_size": 1}}, 400, "New size for extend must be greater than current"),
        ({"os-extend": {"new_size": "two"}}, 400, "new_size"),
        ({"os-extend": {}}, 400, "new_size"),
        ({"os-extend": {"new_size": 2, "force": True}}, 400, "force"),
    ],
)
def test_bad_extend_requests(api: Api, body: object, code: int, fragment: str) -> None:
    volume_id = api.available_volume(1)["id"]
    assert_fault(api.post(f"/volumes/{volume_id}/action", body), code, fragment)
    assert (api.volume(volume_id) or {})["status"] == "available"


def test_driver_error_rolls_back(api: Api, stack: ThreadStack) -> None:
    volume_id = api.available_volume(1)["id"]
    (Path(stack.settings.backends[0].options["path"]) / f"volume-{volume_id}").unlink()
    extend(api, volume_id, 2)
    volume = api.wait_status(volume_id, "error_extending", "available")
    assert (volume["status"], volume["size"]) == ("error_extending", 1)
    assert gigabytes(api) == {"in_use": 1, "reserved": 0}
    assert [m["event_id"] for m in messages(api, volume_id)] == ["VOLUME_VOLUME_007_010"]
    address = stack.settings.temporal_address
    save_history(address, volume_id, "extend", "ExtendVolume-driver-error")


def test_member_may_extend_own_volume(api: Api, member: Api) -> None:
    volume_id = api.available_volume(1)["id"]
    extend(member, volume_id, 2)
    assert api.wait_status(volume_id, "available")["size"] == 2


# Online, driver does it -------------------------------------------------------------------------


def test_attached_not_held_extends_online_and_tells_the_compute(cloud: Cloud) -> None:
    api = cloud.api()
    volume_id, server = attached(api)
    assert_fault(
        api.post(f"/volumes/{volume_id}/action", {"os-extend": {"new_size": 2}}, version="3.41"),
        400,
        "status must be",
    )
    extend(api, volume_id, 2)
    volume = api.wait_status(volume_id, "in-use")
    assert volume["size"] == 2
    assert qemu_img.info(cloud.file(volume_id))["virtual-size"] == 2 * GIB
    poll(lambda: cloud.compute.events, what="the volume-extended event")
    assert cloud.compute.events == [
        {"name": "volume-extended", "server_uuid": server, "tag": volume_id}
    ]
    assert cloud.compute.completions == []
    assert cloud.compute.versions == ["compute 2.51"]
    assert gigabytes(api) == {"in_use": 2, "reserved": 0}


def test_online_extend_refused_when_the_backend_cannot(
    tmp_path: Path, temporal: DevServer, databases: Databases
) -> None:
    backend = BackendConfig(
        name="file", options={"path": str(tmp_path / "volumes"), "online_extend_support": False}
    )
    settings = stack_settings(
        tmp_path, databases.new("sqlite"), temporal.address, backends=[backend]
    )
    stack = ThreadStack(settings).start()
    try:
        api = stack.api()
        volume_id, _ = attached(api)
        response = api.post(
            f"/volumes/{volume_id}/action", {"os-extend": {"new_size": 2}}, version="3.42"
        )
        assert_fault(response, 400, "online_extend_support is false")
        volume = api.volume(volume_id) or {}
        assert (volume["status"], volume["size"]) == ("in-use", 1)
        assert gigabytes(api) == {"in_use": 1, "reserved": 0}
    finally:
        stack.stop()


# Online, the compute does it --------------------------------------------------------------------


@needs_qemu
def test_held_by_qemu_the_compute_resizes_and_completes(cloud: Cloud) -> None:
    api = cloud.api("complete")
    volume_id, server = attached(api)
    cloud.compute.hold(volume_id, cloud.file(volume_id))
    extend(api, volume_id, 2)

    volume = api.wait_status(volume_id, "in-use", "error_extending")
    assert (volume["status"], volume["size"]) == ("in-use", 2)
    seen = cloud.compute.seen[volume_id]
    assert (seen["status"], seen["metadata"]["extend_new_size"]) == ("extending", "2")
    poll(lambda: cloud.compute.completions, what="the compute's completion response")
    assert [r.status_code for r in cloud.compute.completions] == [202]
    assert cloud.compute.events == [
        {"name": "volume-extended", "server_uuid": server, "tag": volume_id}
    ]
    assert cloud.compute.versions == ["compute 2.97"]  # the completion microversion
    info = qemu_img.run("info", "-U", "--output=json", str(cloud.file(volume_id)))
    assert json.loads(info)["virtual-size"] == 2 * GIB
    assert "extend_new_size" not in volume["metadata"]
    assert gigabytes(api) == {"in_use": 2, "reserved": 0}

    address = cloud.stack.settings.temporal_address
    (workflow_id,) = poll(lambda: extend_workflows(address, volume_id))
    save_history(address, volume_id, "extend", "ExtendVolume-compute-completion")
    assert history_steps(address, workflow_id) == [
        "driver.extend_volume",
        "volume.await_compute",
        "compute.volume_extended",
        "operation.finish",
    ]


@needs_qemu
def test_compute_error_rolls_back(cloud: Cloud) -> None:
    api = cloud.api("error")
    volume_id, _ = attached(api)
    cloud.compute.hold(volume_id, cloud.file(volume_id))
    extend(api, volume_id, 2)

    volume = api.wait_status(volume_id, "error_extending", "in-use")
    assert (volume["status"], volume["size"]) == ("error_extending", 1)
    poll(lambda: cloud.compute.completions, what="the compute's completion response")
    assert [r.status_code for r in cloud.compute.completions] == [202]
    assert "extend_new_size" not in volume["metadata"]
    assert gigabytes(api) == {"in_use": 1, "reserved": 0}
    (message,) = messages(api, volume_id)
    assert message["user_message"] == "extend volume:Compute service failed to extend volume."
    address = cloud.stack.settings.temporal_address
    save_history(address, volume_id, "extend", "ExtendVolume-compute-error")


@needs_qemu
def test_silence_past_the_timeout_rolls_back(impatient_cloud: Cloud) -> None:
    api = impatient_cloud.api("silent")
    volume_id, _ = attached(api)
    impatient_cloud.compute.hold(volume_id, impatient_cloud.file(volume_id))
    extend(api, volume_id, 2)

    volume = api.wait_status(volume_id, "error_extending", "in-use")
    assert (volume["status"], volume["size"]) == ("error_extending", 1)
    assert len(impatient_cloud.compute.events) == 1
    assert gigabytes(api) == {"in_use": 1, "reserved": 0}
    assert [m["event_id"] for m in messages(api, volume_id)] == ["VOLUME_VOLUME_007_009"]
    assert_fault(complete(api, volume_id, False), 400, "Volume is not being extended.")
    address = impatient_cloud.stack.settings.temporal_address
    save_history(address, volume_id, "extend", "ExtendVolume-timeout")


@needs_qemu
def test_undeliverable_event_rolls_back(cloud: Cloud) -> None:
    """On the patient stack (600 s): rolled back within the default 30 s poll, so by the
    refusal, not by the timeout."""
    api = cloud.api("refuse")
    volume_id, _ = attached(api)
    cloud.compute.hold(volume_id, cloud.file(volume_id))
    extend(api, volume_id, 2)

    volume = api.wait_status(volume_id, "error_extending", "in-use")
    assert (volume["status"], volume["size"]) == ("error_extending", 1)
    assert len(cloud.compute.events) >= 1
    assert gigabytes(api) == {"in_use": 1, "reserved": 0}
    assert [m["event_id"] for m in messages(api, volume_id)] == ["VOLUME_VOLUME_007_009"]


@needs_qemu
def test_no_compute_configured_fails_fast(api: Api, stack: ThreadStack, tmp_path: Path) -> None:
    volume_id, _ = attached(api)
    volume_file = Path(stack.settings.backends[0].options["path"]) / f"volume-{volume_id}"
    guest = Guest(volume_file, tmp_path)
    try:
        extend(api, volume_id, 2)
        volume = api.wait_status(volume_id, "error_extending", "in-use")
        assert (volume["status"], volume["size"]) == ("error_extending", 1)
        assert gigabytes(api) == {"in_use": 1, "reserved": 0}
        (message,) = messages(api, volume_id)
        assert message["event_id"] == "VOLUME_VOLUME_007_009"
    finally:
        guest.stop()


# The completion entry points ----------------------------------------------------------------------


def _waiting(cloud: Cloud, api: Api) -> str:
    """A volume whose extend waits for the compute (which stays silent)."""
    volume_id, _ = attached(api)
    cloud.compute.hold(volume_id, cloud.file(volume_id))
    extend(api, volume_id, 2)
    poll(lambda: cloud.compute.events, what="the volume-extended event")
    volume = api.volume(volume_id) or {}
    assert (volume["status"], volume["metadata"]["extend_new_size"]) == ("extending", "2")
    return volume_id


@needs_qemu
def test_completion_rules(cloud: Cloud) -> None:
    api = cloud.api("silent")
    available = api.available_volume(1)["id"]
    assert_fault(complete(api, available, False), 400, "Volume is not being extended.")
    assert_fault(
        api.post(
            f"/volumes/{available}/action",
            {"os-extend_volume_completion": {"error": False}},
            version="3.70",
        ),
        404,
    )
    volume_id = _waiting(cloud, api)
    assert_fault(complete(api.as_user("alice"), volume_id, False), 403)
    assert_fault(complete(api, volume_id, "maybe"), 400, "error")
    assert (api.volume(volume_id) or {})["status"] == "extending"

    service = api.as_user("nova", roles="service")
    assert complete(service, volume_id, "false").status_code == 202
    volume = api.wait_status(volume_id, "in-use", "error_extending")
    assert (volume["status"], volume["size"]) == ("in-use", 2)
    assert gigabytes(api) == {"in_use": 3, "reserved": 0}
    assert_fault(complete(api, volume_id, False), 400, "Volume is not being extended.")


@needs_qemu
async def test_completion_as_a_temporal_update(cloud: Cloud) -> None:
    api = cloud.api("silent")
    volume_id = _waiting(cloud, api)
    client = await connect(cloud.stack.settings)
    (workflow_id,) = poll(
        lambda: extend_workflows(cloud.stack.settings.temporal_address, volume_id)
    )
    handle = client.get_workflow_handle(workflow_id)
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert metadata.current_details.startswith("Waiting since ")
    assert f"to extend volume {volume_id} to 2 GiB" in metadata.current_details
    result = await handle.execute_update(ExtendVolume.complete_extend, ExtendCompletion(error=True))
    assert result == "accepted"
    try:  # a second answer is refused: by the validator, or because the workflow has ended
        await handle.execute_update(ExtendVolume.complete_extend, ExtendCompletion(error=False))
        raise AssertionError("a second completion was accepted")
    except WorkflowUpdateFailedError:
        pass
    except RPCError as ended:
        assert ended.status == RPCStatusCode.NOT_FOUND, ended
    volume = api.wait_status(volume_id, "error_extending", "in-use")
    assert (volume["status"], volume["size"]) == ("error_extending", 1)
    assert [m["event_id"] for m in messages(api, volume_id)] == ["VOLUME_VOLUME_007_009"]


# Durability --------------------------------------------------------------------------------------


@pytest.mark.slow
@needs_qemu
def test_worker_killed_while_waiting_for_the_compute(
    tmp_path: Path, temporal: DevServer, databases: Databases
) -> None:
    base = stack_settings(tmp_path, databases.new("sqlite"), temporal.address)
    compute = FakeCompute(f"http://127.0.0.1:{base.api_port}").start()
    settings = base.model_copy(update={"compute_endpoint": compute.url})
    api_stack = ThreadStack(settings, worker=False).start()
    worker = Process(settings, "worker", log=tmp_path / "worker.log").start()
    try:
        wait_backends_reported(settings.db_url)
        cloud = Cloud(api_stack, compute)
        api = cloud.api("silent")
        volume_id = _waiting(cloud, api)

        worker.kill()
        cloud.compute.guests[volume_id].resize(2 * GIB)
        worker.start()
        assert complete(api, volume_id, False).status_code == 202

        volume = api.wait_status(volume_id, "in-use", "error_extending", timeout=60)
        assert (volume["status"], volume["size"]) == ("in-use", 2)
        assert gigabytes(api) == {"in_use": 2, "reserved": 0}
    finally:
        worker.stop()
        api_stack.stop()
        compute.stop()
