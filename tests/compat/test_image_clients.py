"""Images through the unmodified clients: `cinder create --image`, `cinder upload-to-image`,
openstacksdk `create_volume(image_id=)` / `upload_volume_to_image`, and the `openstack` CLI's
`volume create --image` and `image create --volume`, against a real Glance."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openstack
import pytest

from tests.compat.conftest import CLOUD, cinder_for, field, openstack_env
from tests.helpers import ThreadStack, new_project, poll
from tests.images import MIB, Glance

OPENSTACK = str(Path(sys.executable).parent / "openstack")
pytestmark = pytest.mark.parametrize("image_stack", ["vault"], indirect=True)


def _image(glance: Glance, project: str, tmp: Path, **properties: str) -> tuple[str, bytes]:
    data = os.urandom(2 * MIB)
    plain = tmp / "plain.raw"
    plain.write_bytes(data)
    return glance.create_image(project, plain, **properties), data


def _head(stack: ThreadStack, volume_id: str, length: int) -> bytes:
    root = Path(stack.settings.backends[0].options["path"])
    with open(root / f"volume-{volume_id}", "rb") as handle:
        return handle.read(length)


def test_cinder_create_from_image_and_upload(
    image_stack: ThreadStack, glance: Glance, tmp_path: Path
) -> None:
    cinder = cinder_for(image_stack)
    project = cinder.project  # type: ignore[attr-defined]
    api = image_stack.api(project=project)
    image_id, data = _image(glance, project, tmp_path)
    created = cinder("create", "--image", image_id, "--name", "from-image", "1").stdout
    volume_id = field(created, "id")
    api.wait_status(volume_id, "available", timeout=120)
    shown = cinder("show", volume_id).stdout
    assert field(shown, "bootable") == "true"
    assert f"image_id : {image_id}" in shown  # volume_image_metadata, one key a line
    assert _head(image_stack, volume_id, len(data)) == data
    uploaded = cinder("upload-to-image", volume_id, "from-cinder").stdout
    new_image = field(uploaded, "image_id")
    api.wait_status(volume_id, "available", timeout=120)
    image = glance.show(project, new_image)
    assert image is not None and image["status"] == "active" and image["name"] == "from-cinder"
    assert glance.data(project, new_image)[: len(data)] == data


def test_sdk_and_openstack_cli(image_stack: ThreadStack, glance: Glance, tmp_path: Path) -> None:
    project = new_project()
    api = image_stack.api(project=project)
    image_id, data = _image(glance, project, tmp_path, visibility="public")
    conn = openstack.connect(
        auth_type="admin_token",
        auth={"endpoint": f"{image_stack.url}/v3", "token": f"admin:{project}"},
        block_storage_api_version="3.71",
        load_envvars=False,
    )
    volume = conn.block_storage.create_volume(size=1, image_id=image_id, name="sdk")
    api.wait_status(volume.id, "available", timeout=120)
    assert _head(image_stack, volume.id, len(data)) == data
    answer = conn.block_storage.upload_volume_to_image(volume, image_name="sdk-image")
    api.wait_status(volume.id, "available", timeout=120)
    poll(lambda: (glance.show(project, answer["image_id"]) or {}).get("status") == "active")

    env = openstack_env(image_stack, project, tmp_path, image_endpoint_override=glance.url)

    def openstack_cli(*args: str, column: str = "id") -> str:
        done = subprocess.run(
            [OPENSTACK, "--os-cloud", CLOUD, *args, "-f", "value", "-c", column],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    cli_volume = openstack_cli("volume", "create", "--image", image_id, "--size", "1", "cli")
    api.wait_status(cli_volume, "available", timeout=120)
    assert _head(image_stack, cli_volume, len(data)) == data
    cli_image = openstack_cli(
        "image", "create", "--volume", cli_volume, "cli-image", column="image_id"
    )
    api.wait_status(cli_volume, "available", timeout=120)
    poll(lambda: (glance.show(project, cli_image) or {}).get("status") == "active")
