"""`auth_strategy = keystone` against a real Keystone: the unmodified `openstack` and `cinder`
CLIs with password auth find cinderflow through the catalog; roles come from validated
tokens only (a forged `X-Roles` changes nothing); a compute's service token may complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from cinderflow.temporal.devserver import DevServer, free_port
from tests.compat.conftest import field, rows
from tests.conftest import Databases
from tests.helpers import ThreadStack, poll, stack_settings
from tests.keystone import Keystone

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def cloud(
    tmp_path_factory: pytest.TempPathFactory, temporal: DevServer, databases: Databases
) -> Iterator[tuple[ThreadStack, Keystone]]:
    tmp = tmp_path_factory.mktemp("keystone-cloud")
    keystone = Keystone(tmp / "keystone").start()
    base = stack_settings(tmp, databases.new("sqlite"), temporal.address)
    settings = base.model_copy(
        update={
            "auth_strategy": "keystone",
            "keystone_auth_url": keystone.url,
            "keystone_username": "cinderflow",
            "keystone_password": SecretStr("cinderflowpw"),
        }
    )
    stack = ThreadStack(settings)
    keystone.seed(stack.url)
    stack.start()
    yield stack, keystone
    stack.stop()
    keystone.stop()


def client_env(keystone: Keystone, persona: str) -> dict[str, str]:
    who = keystone.personas[persona]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "CINDER"))}
    env.update(
        OS_AUTH_URL=keystone.url, OS_USERNAME=who.name, OS_PASSWORD=who.password,
        OS_PROJECT_NAME=who.project, OS_USER_DOMAIN_NAME="Default",
        OS_PROJECT_DOMAIN_NAME="Default", OS_IDENTITY_API_VERSION="3",
        OS_REGION_NAME="RegionOne", OS_INTERFACE="public",
    )  # fmt: skip
    return env


def run(tool: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / tool), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{tool} {args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def call(stack: ThreadStack, keystone: Keystone, method: str, path: str, token: str, **kw):
    project = kw.pop("project", keystone.personas["alice"].project_id)
    return httpx.request(
        method, f"{stack.url}/v3/{project}{path}",
        headers={"X-Auth-Token": token, "OpenStack-API-Version": "volume 3.71",
                 **kw.pop("headers", {})},
        timeout=30, **kw,
    )  # fmt: skip


def test_member_and_reader_through_the_catalog(cloud: tuple[ThreadStack, Keystone]) -> None:
    _, keystone = cloud
    member = client_env(keystone, "alice")
    created = json.loads(
        run("openstack", member, "volume", "create", "--size", "1", "kv1", "-f", "json")
    )
    volume_id = created["id"]
    poll(
        lambda: (
            json.loads(run("openstack", member, "volume", "show", volume_id, "-f", "json"))[
                "status"
            ]
            == "available"
        ),
        what="the volume available",
    )
    listed = json.loads(run("openstack", member, "volume", "list", "-f", "json"))
    assert [v["ID"] for v in listed] == [volume_id]

    reader = client_env(keystone, "bob")
    assert [r["ID"] for r in rows(run("cinder", reader, "list"))] == [volume_id]
    denied = subprocess.run(
        [str(BIN / "cinder"), "delete", volume_id], env=reader, capture_output=True, text=True
    )
    assert denied.returncode != 0 and "403" in denied.stdout + denied.stderr
    assert field(run("cinder", reader, "show", volume_id), "status") == "available"

    run("openstack", member, "volume", "delete", volume_id)
    poll(
        lambda: json.loads(run("openstack", member, "volume", "list", "-f", "json")) == [],
        what="the volume gone",
    )


def test_roles_come_from_the_token_only(cloud: tuple[ThreadStack, Keystone]) -> None:
    stack, keystone = cloud
    alice, bob = keystone.token("alice"), keystone.token("bob")
    for token in (alice, bob):
        answer = call(stack, keystone, "GET", "/os-services", token)
        assert answer.status_code == 403, answer.text
        forged = call(stack, keystone, "GET", "/os-services", token,
                      headers={"X-Roles": "admin", "X-Identity-Status": "Confirmed"})  # fmt: skip
        assert forged.status_code == 403, forged.text
    admin = keystone.personas["admin"]
    answer = call(stack, keystone, "GET", "/os-services", keystone.token("admin"),
                  project=admin.project_id)  # fmt: skip
    assert answer.status_code == 200, answer.text

    nobody = call(stack, keystone, "GET", "/volumes", "not-a-token")
    assert nobody.status_code == 401 and "unauthorized" in nobody.json()
    assert "Keystone uri=" in nobody.headers["www-authenticate"]
    assert httpx.get(f"{stack.url}/v3").status_code == 200  # discovery needs no token


def test_a_service_token_may_complete_an_extend(cloud: tuple[ThreadStack, Keystone]) -> None:
    """os-extend_volume_completion is for the compute: alice alone is refused by policy;
    with the compute's service token beside hers, the policy lets it through (and the volume,
    not waiting for a completion, refuses it in its own words)."""
    stack, keystone = cloud
    alice = keystone.token("alice")
    created = call(stack, keystone, "POST", "/volumes", alice, json={"volume": {"size": 1}})
    volume_id = created.json()["volume"]["id"]
    poll(
        lambda: (
            call(stack, keystone, "GET", f"/volumes/{volume_id}", alice).json()["volume"]["status"]
            == "available"
        ),
        what="available",
    )
    body = {"os-extend_volume_completion": {"error": False}}
    alone = call(stack, keystone, "POST", f"/volumes/{volume_id}/action", alice, json=body)
    assert alone.status_code == 403, alone.text
    with_service = call(
        stack, keystone, "POST", f"/volumes/{volume_id}/action", alice, json=body,
        headers={"X-Service-Token": keystone.token("nova")},
    )  # fmt: skip
    assert with_service.status_code in (400, 409), with_service.text
    assert "Policy" not in with_service.text
    forged = call(
        stack, keystone, "POST", f"/volumes/{volume_id}/action", alice, json=body,
        headers={"X-Service-Roles": "service", "X-Service-Identity-Status": "Confirmed"},
    )  # fmt: skip
    assert forged.status_code == 403, forged.text
    assert call(stack, keystone, "DELETE", f"/volumes/{volume_id}", alice).status_code == 202


def test_keystone_unreachable_is_503(
    tmp_path: Path, temporal: DevServer, databases: Databases
) -> None:
    """auth_token cannot reach Keystone: a retryable 503 fault, not a 401 that sends clients
    to re-authenticate."""
    base = stack_settings(tmp_path, databases.new("sqlite"), temporal.address)
    closed = f"http://127.0.0.1:{free_port()}/v3"
    settings = base.model_copy(
        update={"auth_strategy": "keystone", "keystone_auth_url": closed,
                "keystone_password": SecretStr("x")}
    )  # fmt: skip
    stack = ThreadStack(settings).start()
    try:
        answer = httpx.get(f"{stack.url}/v3/volumes", headers={"X-Auth-Token": "some-token"})
        assert answer.status_code == 503, answer.text
        assert "serviceUnavailable" in answer.json()
    finally:
        stack.stop()
