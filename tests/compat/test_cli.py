"""`cinderflow db upgrade`, split workers, and Temporal settings from `TEMPORAL_*`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from cinderflow.db.migrate import alembic_config, current_revision
from cinderflow.settings import Settings
from cinderflow.temporal.client import connect
from cinderflow.temporal.devserver import DevServer
from tests.conftest import Databases
from tests.helpers import (
    Process,
    ThreadStack,
    settings_env,
    stack_settings,
    wait_backends_reported,
)


def test_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    env = settings_env(Settings(database_url=url, data_dir=tmp_path))
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "cinderflow", "db", "upgrade"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "database at revision head" in done.stdout
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert current_revision(url) == head


@pytest.mark.slow
def test_backend_served_by_its_own_worker_process(
    tmp_path: Path, temporal: DevServer, databases: Databases
) -> None:
    """Scale-out shape: API + control worker here, the backend's driver calls in another process."""
    settings = stack_settings(tmp_path, databases.new("sqlite"), temporal.address)
    control = settings.model_copy(update={"backends": []})
    stack = ThreadStack(control).start()
    backend = Process(
        settings, "worker", "--no-control", "--backend", "file", log=tmp_path / "backend.log"
    ).start()
    try:
        wait_backends_reported(settings.db_url)
        api = stack.api()
        volume_id = api.available_volume()["id"]  # placed and created by the other process
        assert (tmp_path / "volumes" / f"volume-{volume_id}").exists()
    finally:
        backend.stop()
        stack.stop()
    assert backend.proc is not None and backend.proc.returncode == 0


async def test_temporal_address_from_temporalio_envconfig(
    temporal: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal.address)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "default")
    client = await connect(Settings())
    assert client.namespace == "default"
    assert await client.count_workflows() is not None


def test_worker_with_nothing_to_serve_refuses(tmp_path: Path) -> None:
    env = settings_env(Settings(data_dir=tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "cinderflow", "worker", "--no-control"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "nothing to serve" in done.stderr


def test_help_shows_the_defaults() -> None:
    """A newcomer's first question is which ports `cinderflow dev` takes."""
    shown = subprocess.run(
        [sys.executable, "-m", "cinderflow", "dev", "--help"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    flat = " ".join(shown.split())
    for default in (
        "(default: 8776)",
        "(default: 7233)",
        "(default: 8233)",
        "(default: 127.0.0.1)",
    ):
        assert default in flat, shown
    assert "(default: None)" not in flat
