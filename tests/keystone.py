"""A real Keystone for tests: Keystone from PyPI in its own venv (`.venv-keystone`, made on
first use), SQLite, fernet tokens, `keystone-manage bootstrap`, served by gunicorn on
127.0.0.1 (recipe and gotchas: ../shared/fixtures/README.md). `seed` adds the personas the
tests use and registers cinderflow in the catalog, as a deployment would."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from cinderflow.temporal.devserver import free_port
from tests.services import service_venv, stop_group, wait_http

REPO = Path(__file__).resolve().parents[1]
KEYSTONE_VENV = Path(os.environ.get("CINDERFLOW_TEST_KEYSTONE_VENV", REPO / ".venv-keystone"))
KEYSTONE_PACKAGES = ("keystone", "gunicorn")
ADMIN_PASSWORD = "adminpw"

KEYSTONE_CONF = """[DEFAULT]
log_file = {root}/keystone.log
use_stderr = false

[database]
connection = sqlite:///{root}/keystone.db

[token]
provider = fernet

[fernet_tokens]
key_repository = {root}/fernet-keys

[fernet_receipts]
key_repository = {root}/fernet-keys

[credential]
key_repository = {root}/credential-keys

[cache]
# without it each token validation costs ~300 ms here
enabled = true
backend = dogpile.cache.memory

[identity]
password_hash_rounds = 4

[resource]
# without it every token says X-Is-Admin-Project: True
admin_project_name = admin
admin_project_domain_name = Default
"""

WSGI = """# Keystone's CONF() parses sys.argv: under gunicorn it would see gunicorn's flags.
import sys
sys.argv = sys.argv[:1]
from keystone.server.wsgi import initialize_public_application  # noqa: E402
application = initialize_public_application()
"""


@dataclass(frozen=True)
class Persona:
    name: str
    password: str
    project: str
    project_id: str
    user_id: str


class Keystone:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v3"
        self.proc: subprocess.Popen[bytes] | None = None
        self.personas: dict[str, Persona] = {}

    def start(self) -> Keystone:
        venv = service_venv(KEYSTONE_VENV, KEYSTONE_PACKAGES)
        etc = self.root / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "keystone.conf").write_text(KEYSTONE_CONF.format(root=self.root))
        (self.root / "ks_wsgi.py").write_text(WSGI)
        for repository in ("fernet-keys", "credential-keys"):  # what *_setup would write
            keys = self.root / repository
            keys.mkdir(mode=0o700, exist_ok=True)
            for index in ("0", "1"):
                (keys / index).write_bytes(Fernet.generate_key())
        manage = [
            str(venv / "bin" / "keystone-manage"),
            "--config-file",
            str(etc / "keystone.conf"),
        ]
        subprocess.run([*manage, "db_sync"], check=True, capture_output=True)
        subprocess.run(
            [*manage, "bootstrap", "--bootstrap-password", ADMIN_PASSWORD,
             "--bootstrap-admin-url", self.url, "--bootstrap-internal-url", self.url,
             "--bootstrap-public-url", self.url, "--bootstrap-region-id", "RegionOne"],
            check=True, capture_output=True,
        )  # fmt: skip
        self.proc = subprocess.Popen(
            [str(venv / "bin" / "gunicorn"), "--no-control-socket", "-w", "1",
             "-b", f"127.0.0.1:{self.port}", "--pythonpath", str(self.root), "ks_wsgi:application"],
            env={**os.environ, "OS_KEYSTONE_CONFIG_DIR": str(etc)},
            cwd=self.root,
            stdout=open(self.root / "gunicorn.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        wait_http(self.url, "Keystone", proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)

    def seed(self, cinderflow_url: str) -> Keystone:
        """Projects `demo` and `service`; alice (member) and bob (reader) in demo, the
        service user `cinderflow` (admin of service, the account auth_token validates with),
        `nova` (service role); the admin; and cinderflow as the `volumev3` endpoint."""
        import openstack

        conn = openstack.connect(
            auth_url=self.url, username="admin", password=ADMIN_PASSWORD, project_name="admin",
            user_domain_name="Default", project_domain_name="Default", region_name="RegionOne",
            identity_api_version="3", load_yaml_config=False, load_envvars=False,
        )  # fmt: skip
        identity = conn.identity
        roles = {r.name: r for r in identity.roles()}
        if "service" not in roles:
            roles["service"] = identity.create_role(name="service")
        projects = {
            name: identity.create_project(name=name, domain_id="default")
            for name in ("demo", "service")
        }
        admin_project = identity.find_project("admin", domain_id="default")
        for name, password, project, role in (
            ("alice", "memberpw", "demo", "member"),
            ("bob", "readerpw", "demo", "reader"),
            ("cinderflow", "cinderflowpw", "service", "admin"),
            ("nova", "novapw", "service", "service"),
        ):
            user = identity.create_user(name=name, password=password, domain_id="default")
            identity.assign_project_role_to_user(projects[project], user, roles[role])
            self.personas[name] = Persona(name, password, project, projects[project].id, user.id)
        admin = identity.find_user("admin", domain_id="default")
        self.personas["admin"] = Persona(
            "admin", ADMIN_PASSWORD, "admin", admin_project.id, admin.id
        )
        service = identity.create_service(name="cinderv3", type="volumev3")
        for interface in ("public", "internal", "admin"):
            identity.create_endpoint(
                service_id=service.id, interface=interface, region_id="RegionOne",
                url=f"{cinderflow_url}/v3/$(project_id)s",
            )  # fmt: skip
        return self

    def token(self, persona: str) -> str:
        who = self.personas[persona]
        auth = v3.Password(
            auth_url=self.url, username=who.name, password=who.password,
            user_domain_id="default", project_name=who.project, project_domain_id="default",
        )  # fmt: skip
        return ks_session.Session(auth=auth).get_token()
