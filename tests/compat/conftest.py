"""Running the unmodified `cinder` CLI (python-cinderclient) in noauth mode."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import ThreadStack, new_project

CINDER = str(Path(sys.executable).parent / "cinder")
Cinder = Callable[..., subprocess.CompletedProcess[str]]


def cinder_for(stack: ThreadStack, project: str | None = None) -> Cinder:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OS_", "CINDER"))},
        "OS_AUTH_TYPE": "noauth",
        "OS_USER_ID": "admin",
        "OS_PROJECT_ID": project or new_project(),
        "CINDER_ENDPOINT": f"{stack.url}/v3",
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([CINDER, *args], env=env, capture_output=True, text=True, timeout=60)
        if check:
            assert done.returncode == 0, f"cinder {args}: {done.stdout}\n{done.stderr}"
        return done

    run.project = env["OS_PROJECT_ID"]  # type: ignore[attr-defined]
    return run


@pytest.fixture
def cinder(stack: ThreadStack) -> Cinder:
    return cinder_for(stack)


def field(table: str, name: str) -> str:
    """A value of `cinder show`-style output (a Property/Value table)."""
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] == name:
            return cells[1]
    raise AssertionError(f"{name} not in\n{table}")


def rows(table: str) -> list[dict[str, str]]:
    """The rows of `cinder list`-style output as dicts keyed by column title."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    if not lines:
        return []
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, [c.strip() for c in line.strip("|").split("|")], strict=True))
        for line in lines[1:]
    ]


CLOUD = "cinderflow"


def openstack_env(stack: ThreadStack, project: str, tmp: Path, **settings: str) -> dict[str, str]:
    """The environment for the `openstack` CLI on cloud CLOUD: client-interop.md's
    recommended cloud, an admin token `admin:<project>`, plus `settings` (endpoint
    overrides) in its clouds.yaml."""
    path = tmp / "clouds.yaml"
    extra = "".join(f"    {k}: '{v}'\n" for k, v in settings.items())
    path.write_text(
        f"clouds:\n  {CLOUD}:\n    auth_type: admin_token\n"
        f"    auth: {{endpoint: '{stack.url}/v3', token: 'admin:{project}'}}\n"
        f"    compute_endpoint_override: '{stack.url}/v3'\n"
        "    block_storage_api_version: '3.71'\n" + extra
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "CINDER"))}
    env["OS_CLIENT_CONFIG_FILE"] = str(path)
    return env
