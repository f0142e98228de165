"""An image import survives the death of its worker mid-conversion (it starts its copy again
and finishes once), and a reset mid-import or mid-upload undoes what was made: no partial
volume, staging file, stray secret or half image is left."""

from __future__ import annotations

import binascii
import hashlib
import os
from pathlib import Path

import pytest
from castellan.common.objects import passphrase as castellan_passphrase

from cinderflow.activities.images import ImageStaging
from cinderflow.keys.service import ProjectContext
from cinderflow.temporal.devserver import DevServer
from tests.api.test_reset_status import reset
from tests.conftest import Databases
from tests.helpers import (
    Background,
    Process,
    ThreadStack,
    hold_failpoint,
    poll,
    save_history,
    stack_settings,
    step_failpoint,
    wait_backends_reported,
    wait_failpoint,
    workflows_of,
)
from tests.images import MIB, Glance, OpenBao, qcow2_luks
from tests.retyping import guest_digest, keys_of, new_type
from tests.workflow.test_reset_inflight import _told_to_stop

IMPORT_PROGRESS = "driver.copy_image_to_volume.progress"
UPLOAD_PROGRESS = "driver.copy_volume_to_image.progress"
LENGTH = 8 * MIB


def _encrypted_image(stack: ThreadStack, glance: Glance, project: str, tmp: Path):  # type: ignore[no-untyped-def]
    """A qcow2+LUKS image (conversion, not a copy) with its passphrase in the key manager."""
    data = os.urandom(LENGTH)
    plain = tmp / "plain.raw"
    plain.write_bytes(data)
    words = binascii.hexlify(os.urandom(8))
    secret_id = keys_of(stack).manager.store(
        ProjectContext(project), castellan_passphrase.Passphrase(words)
    )
    image = qcow2_luks(plain, tmp / "disk.qcow2", words)
    image_id = glance.create_image(project, image, disk_format="qcow2", os_encrypt_key_id=secret_id)
    return image_id, secret_id, data


def _backend_files(stack: ThreadStack) -> list[str]:
    root = Path(stack.settings.backends[0].options["path"])
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".probe-"))


def _staged(stack: ThreadStack) -> list[Path]:
    return list(ImageStaging(stack.settings).directory.glob("image-*"))


def _hold_until_converting(stack: ThreadStack, hold: Path) -> None:
    """Step the import's progress reports past its download, to one of its conversion."""
    root = Path(stack.settings.backends[0].options["path"])
    for _ in range(200):
        wait_failpoint(stack.settings, IMPORT_PROGRESS)
        if list(root.glob(".volume-*.partial")):
            return
        step_failpoint(stack.settings, IMPORT_PROGRESS)
    raise AssertionError("the import never reached its conversion")


def _wait_told_to_stop(stack: ThreadStack, volume_id: str, operation: str) -> None:
    """The reset has cut the held driver call (its heartbeat carried the cancel back)."""
    address = stack.settings.temporal_address
    (workflow_id,) = poll(lambda: workflows_of(address, volume_id, operation))
    poll(lambda: _told_to_stop(address, workflow_id), what="the driver call told to stop")


@pytest.mark.slow
def test_worker_killed_mid_conversion(
    tmp_path: Path, temporal: DevServer, databases: Databases, glance: Glance, openbao: OpenBao
) -> None:
    settings = stack_settings(
        tmp_path,
        databases.new("sqlite"),
        temporal.address,
        image_endpoint=glance.url,
        **openbao.settings(),
    )
    api_stack = ThreadStack(settings, worker=False).start()
    worker = Process(settings, "worker", log=tmp_path / "worker.log").start()
    try:
        wait_backends_reported(settings.db_url)
        api = api_stack.api()
        image_id, secret_id, data = _encrypted_image(api_stack, glance, api.project, tmp_path)
        vtype = new_type(api, None, encrypted=True)
        secrets_before = openbao.secret_ids()
        hold = hold_failpoint(settings, IMPORT_PROGRESS)
        try:
            volume_id = api.create_volume(1, imageRef=image_id, volume_type=vtype["name"])["id"]
            _hold_until_converting(api_stack, hold)
            assert api.volume(volume_id)["status"] == "downloading"  # type: ignore[index]
            worker.kill()
            hold.unlink()
            worker.start()
        finally:
            hold.unlink(missing_ok=True)
        api.wait_status(volume_id, "available", timeout=120)
        shown = api.get(f"/volumes/{volume_id}", version="3.64").json()["volume"]
        assert guest_digest(api_stack, shown, LENGTH) == hashlib.sha256(data).hexdigest()
        assert _backend_files(api_stack) == [f"volume-{volume_id}"]
        poll(lambda: not _staged(api_stack), what="the killed attempt's staging file removed")
        assert openbao.secret_ids() - secrets_before == {shown["encryption_key_id"]}
        assert secret_id in openbao.secret_ids()  # the image's stays the image's
        assert len(workflows_of(settings.temporal_address, volume_id, "create")) == 1
    finally:
        worker.stop()
        api_stack.stop()


@pytest.fixture
def image_own_stack(
    tmp_path: Path, temporal: DevServer, databases: Databases, glance: Glance, openbao: OpenBao
):  # type: ignore[no-untyped-def]
    settings = stack_settings(
        tmp_path,
        databases.new("sqlite"),
        temporal.address,
        image_endpoint=glance.url,
        **openbao.settings(),
    )
    stack = ThreadStack(settings).start()
    yield stack
    stack.stop()


def test_reset_mid_import_removes_what_it_made(
    image_own_stack: ThreadStack, glance: Glance, openbao: OpenBao, tmp_path: Path
) -> None:
    stack = image_own_stack
    api = stack.api()
    image_id, secret_id, _ = _encrypted_image(stack, glance, api.project, tmp_path)
    vtype = new_type(api, None, encrypted=True)
    secrets_before = openbao.secret_ids()
    hold = hold_failpoint(stack.settings, IMPORT_PROGRESS)
    try:
        volume_id = api.create_volume(1, imageRef=image_id, volume_type=vtype["name"])["id"]
        _hold_until_converting(stack, hold)
        asking = Background(lambda: reset(api, volume_id, status="error"))
        _wait_told_to_stop(stack, volume_id, "create")
    finally:
        hold.unlink()
    assert asking.result().status_code == 202
    volume = api.wait_status(volume_id, "error", timeout=60)
    poll(lambda: not workflows_of(stack.settings.temporal_address, volume_id, running=True))
    assert _backend_files(stack) == [], "no partial volume"
    assert not _staged(stack), "no staging file"
    assert (
        api.get(f"/volumes/{volume_id}", version="3.64").json()["volume"]["encryption_key_id"]
        is None
    )
    assert openbao.secret_ids() == secrets_before, "the volume's key is deleted"
    assert secret_id in openbao.secret_ids()
    assert volume["bootable"] == "false"
    address = stack.settings.temporal_address
    save_history(address, volume_id, "create", "CreateVolume-reset-mid-image-import")
    assert api.delete(f"/volumes/{volume_id}").status_code == 202
    api.wait_gone(volume_id)


def test_reset_mid_upload_deletes_the_image(
    image_own_stack: ThreadStack, glance: Glance, openbao: OpenBao, tmp_path: Path
) -> None:
    stack = image_own_stack
    api = stack.api()
    vtype = new_type(api, None, encrypted=True)
    volume = api.available_volume(volume_type=vtype["name"])
    secrets_before = openbao.secret_ids()
    hold = hold_failpoint(stack.settings, UPLOAD_PROGRESS)
    try:
        answer = api.post(
            f"/volumes/{volume['id']}/action",
            {"os-volume_upload_image": {"image_name": "cut", "disk_format": "raw"}},
        )
        assert answer.status_code == 202, answer.text
        image_id = answer.json()["os-volume_upload_image"]["image_id"]
        wait_failpoint(stack.settings, UPLOAD_PROGRESS)
        assert glance.show(api.project, image_id)["status"] == "queued"  # type: ignore[index]
        assert len(openbao.secret_ids() - secrets_before) == 1  # the image's clone
        asking = Background(lambda: reset(api, volume["id"], status="available"))
        _wait_told_to_stop(stack, volume["id"], "upload_image")
    finally:
        hold.unlink()
    assert asking.result().status_code == 202
    api.wait_status(volume["id"], "available")
    poll(lambda: not workflows_of(stack.settings.temporal_address, volume["id"], running=True))
    assert glance.show(api.project, image_id) is None, "no half image left"
    address = stack.settings.temporal_address
    save_history(address, volume["id"], "upload_image", "UploadVolumeToImage-reset-mid-upload")
    assert openbao.secret_ids() == secrets_before, "the clone of the key is deleted"
    assert not _staged(stack)
