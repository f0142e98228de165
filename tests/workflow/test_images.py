"""Volumes from images and volumes uploaded as images, against a real Glance, with each key
manager (`image_stack` runs every test with OpenBao and with the local one).

Images are real files made with qemu-img (raw, qcow2, raw LUKS, qcow2+LUKS), uploaded to
Glance; secrets are stored in the stack's key manager as a user would (Barbican/Vault hold
them, here through castellan). What a volume holds is read back through LUKS where encrypted.
"""

from __future__ import annotations

import binascii
import hashlib
import os
from pathlib import Path

import pytest
from castellan.common.objects import passphrase as castellan_passphrase
from castellan.common.objects import symmetric_key

from cinderflow.activities.images import ImageStaging
from cinderflow.drivers import qemu_img
from cinderflow.keys.service import ProjectContext
from tests.helpers import Api, ThreadStack, assert_fault, poll, save_history
from tests.images import MIB, Glance, OpenBao, qcow2, qcow2_luks, raw_luks
from tests.retyping import backend_file, guest_digest, keys_of, message_of, new_type

DATA_LENGTH = 6 * MIB
DETAIL = "3.64"  # encryption_key_id is shown from here


def _data(tmp_path: Path) -> tuple[Path, bytes]:
    """A raw file of random data (a guest disk's first MiBs), sparse-able zeros after."""
    data = os.urandom(DATA_LENGTH)
    plain = tmp_path / "plain.raw"
    plain.write_bytes(data)
    return plain, data


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _store_secret(stack: ThreadStack, project: str, secret: object) -> str:
    return keys_of(stack).manager.store(ProjectContext(project), secret)


def _volume(api: Api, volume_id: str) -> dict:
    response = api.get(f"/volumes/{volume_id}", version=DETAIL)
    assert response.status_code == 200, response.text
    return response.json()["volume"]


def _from_image(api: Api, image_id: str, size: int = 1, **fields: object) -> dict:
    created = api.create_volume(size, imageRef=image_id, **fields)
    assert created["status"] == "creating"
    api.wait_status(created["id"], "available", "error", timeout=120)
    return _volume(api, created["id"])


def test_volume_from_a_raw_image(image_stack: ThreadStack, glance: Glance, tmp_path: Path) -> None:
    api = image_stack.api()
    plain, data = _data(tmp_path)
    image_id = glance.create_image(api.project, plain, os_distro="cirros")
    volume = _from_image(api, image_id)
    assert volume["status"] == "available", volume
    assert volume["bootable"] == "true"
    assert volume["encrypted"] is False
    shown = volume["volume_image_metadata"]
    assert shown["image_id"] == image_id and shown["disk_format"] == "raw"
    assert shown["os_distro"] == "cirros"
    assert guest_digest(image_stack, volume, DATA_LENGTH) == _digest(data)
    assert backend_file(image_stack, volume).stat().st_size == 1024**3
    found = api.get("/volumes/detail", params={"glance_metadata": f'{{"image_id": "{image_id}"}}'})
    assert [v["id"] for v in found.json()["volumes"]] == [volume["id"]]


def test_a_qcow2_image_is_converted(
    image_stack: ThreadStack, glance: Glance, tmp_path: Path
) -> None:
    api = image_stack.api()
    plain, data = _data(tmp_path)
    image_id = glance.create_image(
        api.project, qcow2(plain, tmp_path / "disk.qcow2"), disk_format="qcow2"
    )
    volume = _from_image(api, image_id, size=None)  # type: ignore[arg-type]
    assert volume["status"] == "available" and volume["size"] == 1
    assert guest_digest(image_stack, volume, DATA_LENGTH) == _digest(data)


def test_raw_luks_image_with_a_symmetric_secret(
    image_stack: ThreadStack, glance: Glance, tmp_path: Path
) -> None:
    """Cinder's own encrypted uploads: the volume gets a clone of the image's secret and the
    ciphertext as it is; deleting the image's secret afterwards leaves the volume whole."""
    api = image_stack.api()
    plain, data = _data(tmp_path)
    key = os.urandom(32)
    secret_id = _store_secret(image_stack, api.project, symmetric_key.SymmetricKey("AES", 256, key))
    image = raw_luks(plain, tmp_path / "disk.luks", binascii.hexlify(key))
    image_id = glance.create_image(
        api.project,
        image,
        container_format="luks",
        os_encrypt_format="LUKSv1",
        os_encrypt_key_id=secret_id,
        os_decrypt_size=str(DATA_LENGTH),
    )
    vtype = new_type(api, None, encrypted=True)
    volume = _from_image(api, image_id, volume_type=vtype["name"])
    assert volume["status"] == "available", volume
    assert volume["encrypted"] is True and volume["bootable"] == "true"
    assert volume["encryption_key_id"] not in (None, secret_id)
    assert guest_digest(image_stack, volume, DATA_LENGTH) == _digest(data)
    keys_of(image_stack).delete(api.project, secret_id)
    assert guest_digest(image_stack, volume, DATA_LENGTH) == _digest(data)
    assert "encryption" not in str(volume["volume_image_metadata"])


def test_qcow2_luks_image_with_a_non_ascii_passphrase(
    image_stack: ThreadStack, glance: Glance, tmp_path: Path
) -> None:
    """A Nova-style encrypted qcow2: converted into a raw LUKS volume under its own key."""
    api = image_stack.api()
    plain, data = _data(tmp_path)
    words = "pässwörd-ключ-鍵".encode()
    secret_id = _store_secret(image_stack, api.project, castellan_passphrase.Passphrase(words))
    image = qcow2_luks(plain, tmp_path / "disk.qcow2", words)
    image_id = glance.create_image(
        api.project,
        image,
        disk_format="qcow2",
        os_encrypt_format="LUKSv1",
        os_encrypt_key_id=secret_id,
    )
    vtype = new_type(api, None, encrypted=True)
    volume = _from_image(api, image_id, volume_type=vtype["name"])
    assert volume["status"] == "available", volume
    assert volume["encryption_key_id"] not in (None, secret_id)
    path = backend_file(image_stack, volume)
    assert qemu_img.info(path, "luks")["virtual-size"] == 1024**3  # a raw LUKS volume
    assert guest_digest(image_stack, volume, DATA_LENGTH) == _digest(data)
    if image_stack.settings.key_manager == "local":
        address = image_stack.settings.temporal_address
        save_history(address, volume["id"], "create", "CreateVolume-from-encrypted-image")


def test_plain_image_into_an_encrypted_type(
    image_stack: ThreadStack, glance: Glance, tmp_path: Path
) -> None:
    api = image_stack.api()
    plain, data = _data(tmp_path)
    image_id = glance.create_image(api.project, plain)
    vtype = new_type(api, None, encrypted=True)
    volume = _from_image(api, image_id, volume_type=vtype["name"])
    assert volume["status"] == "available" and volume["encrypted"] is True
    path = backend_file(image_stack, volume)
    assert data[:4096] not in path.read_bytes()[: 4 * MIB]  # stored encrypted
    assert guest_digest(image_stack, volume, DATA_LENGTH) == _digest(data)


def test_encrypted_image_into_an_unencrypted_type_is_refused(
    image_stack: ThreadStack, glance: Glance, tmp_path: Path
) -> None:
    api = image_stack.api()
    plain, _ = _data(tmp_path)
    image = raw_luks(plain, tmp_path / "disk.luks", b"x" * 16)
    image_id = glance.create_image(
        api.project, image, container_format="luks", os_encrypt_key_id="not-looked-up"
    )
    before = api.get("/volumes").json()["volumes"]
    refused = api.post("/volumes", {"volume": {"size": 1, "imageRef": image_id}})
    assert_fault(refused, 400, "must have an encryption type")
    assert api.get("/volumes").json()["volumes"] == before


def test_image_checks(image_stack: ThreadStack, glance: Glance, tmp_path: Path) -> None:
    """Cinder's checks and messages, each before anything is created."""
    api = image_stack.api()
    big = tmp_path / "big.qcow2"
    qemu_img.run("create", "-q", "-f", "qcow2", str(big), "2G")  # small file, 2 GiB disk
    image_id = glance.create_image(api.project, big, disk_format="qcow2")
    refused = api.post("/volumes", {"volume": {"size": 1, "imageRef": image_id}})
    assert_fault(refused, 400, "Image virtual size is 2GB and doesn't fit in a volume of size 1GB")
    missing = api.post("/volumes", {"volume": {"size": 1, "imageRef": "no-such-image"}})
    assert_fault(missing, 404, "Image no-such-image could not be found.")
    plain, _ = _data(tmp_path)
    small = glance.create_image(api.project, plain, min_disk=3)
    refused = api.post("/volumes", {"volume": {"size": 2, "imageRef": small}})
    assert_fault(refused, 400, "cannot be smaller than the image minDisk size 3GB")
    both = api.post("/volumes", {"volume": {"size": 1, "imageRef": small, "source_volid": small}})
    assert_fault(both, 400, "Only one of")
    for ref in ("", "../../v2/images", f"{small}/file", "not-an-id", f"{small}/../x"):
        odd = api.post("/volumes", {"volume": {"size": 1, "imageRef": ref}})
        assert_fault(odd, 404, "could not be found")
    assert api.get("/volumes").json()["volumes"] == []


def test_a_wrong_secret_ends_in_error_with_nothing_left(
    image_stack: ThreadStack, glance: Glance, tmp_path: Path
) -> None:
    api = image_stack.api()
    plain, _ = _data(tmp_path)
    secret_id = _store_secret(
        image_stack, api.project, castellan_passphrase.Passphrase(b"not-the-passphrase")
    )
    image = qcow2_luks(plain, tmp_path / "disk.qcow2", b"the-passphrase")
    image_id = glance.create_image(
        api.project, image, disk_format="qcow2", os_encrypt_key_id=secret_id
    )
    vtype = new_type(api, None, encrypted=True)
    volume = _from_image(api, image_id, volume_type=vtype["name"])
    assert volume["status"] == "error"
    assert volume["encryption_key_id"] is None  # the volume's key was deleted with its data
    if image_stack.settings.key_manager == "local":
        address = image_stack.settings.temporal_address
        save_history(address, volume["id"], "create", "CreateVolume-image-copy-failed")
    assert "image" in message_of(api, volume["id"])
    root = Path(image_stack.settings.backends[0].options["path"])
    assert not list(root.glob(f"*{volume['id']}*"))
    staging = ImageStaging(image_stack.settings).directory
    assert not list(staging.glob(f"image-{volume['id']}.*"))


def test_upload_an_encrypted_volume_and_create_it_back(
    image_stack: ThreadStack, glance: Glance, openbao: OpenBao, tmp_path: Path
) -> None:
    """The upload is a raw LUKS image under a new secret with the spec's properties; a volume
    made from it has the same plaintext; deleting the image deletes the secret (Glance does in
    a key manager it shares, OpenBao; cinderflow's sweep in its local one)."""
    api = image_stack.api()
    plain, data = _data(tmp_path)
    vtype = new_type(api, None, encrypted=True)
    source = _from_image(api, glance.create_image(api.project, plain), volume_type=vtype["name"])
    answer = api.post(
        f"/volumes/{source['id']}/action",
        {"os-volume_upload_image": {"image_name": "backup", "disk_format": "raw"}},
    )
    assert answer.status_code == 202, answer.text
    upload = answer.json()["os-volume_upload_image"]
    assert upload["status"] == "uploading" and upload["volume_type"]["name"] == vtype["name"]
    image_id = upload["image_id"]
    assert glance.show(api.project, image_id) is not None  # the record exists at once
    api.wait_status(source["id"], "available", timeout=120)
    image = glance.show(api.project, image_id)
    assert image is not None and image["status"] == "active", image
    key_id = image["os_encrypt_key_id"]
    assert key_id not in (source["encryption_key_id"], None)
    assert image["cinder_encryption_key_id"] == key_id
    assert image["os_encrypt_key_deletion_policy"] == "on_image_deletion"
    assert image["os_encrypt_format"] == "LUKSv1"
    assert int(image["os_decrypt_size"]) == 1024**3
    if image_stack.settings.key_manager == "local":
        address = image_stack.settings.temporal_address
        save_history(address, source["id"], "upload_image", "UploadVolumeToImage-encrypted")
    back = _from_image(api, image_id, volume_type=vtype["name"])
    assert back["status"] == "available", back
    assert guest_digest(image_stack, back, DATA_LENGTH) == _digest(data)
    assert _volume(api, source["id"])["status"] == "available"
    keys = keys_of(image_stack)
    assert keys.exists(api.project, key_id)
    glance.delete(api.project, image_id)
    # Glance deletes it in the key manager it shares (OpenBao); cinderflow's worker deletes
    # it from its own (local) once it sees the image gone
    poll(lambda: not keys.exists(api.project, key_id), what="the image's secret deleted")
    if image_stack.settings.key_manager == "vault":
        assert openbao.secret(key_id) is None
    assert guest_digest(image_stack, back, DATA_LENGTH) == _digest(data)


def test_upload_a_plain_volume_as_qcow2(
    image_stack: ThreadStack, glance: Glance, tmp_path: Path
) -> None:
    api = image_stack.api()
    plain, data = _data(tmp_path)
    source = _from_image(api, glance.create_image(api.project, plain, os_distro="cirros"))
    answer = api.post(
        f"/volumes/{source['id']}/action",
        {
            "os-volume_upload_image": {
                "image_name": "as-qcow2",
                "disk_format": "qcow2",
                "protected": True,
            }
        },
        version="3.1",
    )
    assert answer.status_code == 202, answer.text
    upload = answer.json()["os-volume_upload_image"]
    assert upload["visibility"] == "private" and upload["protected"] is True
    api.wait_status(source["id"], "available", timeout=120)
    image = glance.show(api.project, upload["image_id"])
    assert image is not None and image["status"] == "active" and image["disk_format"] == "qcow2"
    assert image["protected"] is True  # made protected once complete
    assert image["os_distro"] == "cirros"  # the volume's image metadata goes along
    downloaded = tmp_path / "down.qcow2"
    downloaded.write_bytes(glance.data(api.project, upload["image_id"]))
    converted = tmp_path / "down.raw"
    qemu_img.copy(downloaded, converted, source_format="qcow2")
    assert _digest(converted.read_bytes()[:DATA_LENGTH]) == _digest(data)


def test_upload_checks(image_stack: ThreadStack, glance: Glance, tmp_path: Path) -> None:
    api = image_stack.api()
    volume = api.available_volume()
    action = f"/volumes/{volume['id']}/action"
    below = api.post(
        action,
        {"os-volume_upload_image": {"image_name": "x", "visibility": "private"}},
        version="3.0",
    )
    assert_fault(below, 400)
    ploop = api.post(
        action, {"os-volume_upload_image": {"image_name": "x", "disk_format": "ploop"}}
    )
    assert_fault(ploop, 400, "not supported")
    nameless = api.post(action, {"os-volume_upload_image": {}})
    assert_fault(nameless, 400)
    vtype = new_type(api, None, encrypted=True)
    encrypted = api.available_volume(volume_type=vtype["name"])
    qcow = api.post(
        f"/volumes/{encrypted['id']}/action",
        {"os-volume_upload_image": {"image_name": "x", "disk_format": "qcow2"}},
    )
    assert_fault(qcow, 400, "disk_format must be raw")
    assert [i for i in glance.images(api.project) if i["name"] == "x"] == []
    assert _volume(api, volume["id"])["status"] == "available"


@pytest.fixture(autouse=True)
def _no_leftover_staging(image_stack: ThreadStack):  # type: ignore[no-untyped-def]
    """No test leaves an image on a worker's disk."""
    yield
    staging = ImageStaging(image_stack.settings).directory
    poll(lambda: not list(staging.glob("image-*")), what="staging files removed")
