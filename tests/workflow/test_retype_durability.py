"""A migration's copy survives the death of its worker and a restart of Temporal: the retype
finishes once, with the data, and leaves no destination, partial file, key or reservation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cinderflow.temporal.devserver import DevServer, free_port
from tests.conftest import Databases
from tests.helpers import (
    Process,
    ThreadStack,
    assert_usage_is_recount,
    hold_failpoint,
    stack_settings,
    wait_backends_reported,
    wait_failpoint,
)
from tests.retyping import (
    COPY_PROGRESS,
    MIB,
    backend_file,
    guest_digest,
    key_exists,
    keys_of,
    new_type,
    retype,
    root,
    settled,
    two_backends,
    wait_retype_ended,
    write_guest,
)

pytestmark = pytest.mark.slow


def files(stack: ThreadStack) -> set[str]:
    """Every file both backends hold (probes aside), exports included."""
    found = set()
    for backend in ("gold", "silver"):
        for path in root(stack, backend).rglob("*"):
            if path.is_file() and not path.name.startswith(".probe-"):
                found.add(f"{backend}/{path.relative_to(root(stack, backend))}")
    return found


def migrate_through(stack: ThreadStack, crash) -> None:
    """Retype an encrypted volume to an encrypted type on the other backend, call `crash()`
    while its copy is held at a progress report, let it go on, and check the outcome."""
    api = stack.api()
    gold, silver = new_type(api, "gold", encrypted=True), new_type(api, "silver", encrypted=True)
    volume = api.available_volume(1, volume_type=gold["name"])
    write_guest(stack, volume, 0, os.urandom(64 * MIB))
    digest, old_key = guest_digest(stack, volume, 64 * MIB), volume["encryption_key_id"]
    hold = hold_failpoint(stack.settings, COPY_PROGRESS)
    try:
        assert retype(api, volume["id"], silver["name"]).status_code == 202
        wait_failpoint(stack.settings, COPY_PROGRESS)
        crash(hold)
    finally:
        hold.unlink(missing_ok=True)
    done = settled(api, volume["id"])
    assert done["status"] == "available" and done["volume_type"] == silver["name"]
    assert done["os-vol-mig-status-attr:migstat"] == "success"
    wait_retype_ended(stack, volume["id"])
    assert guest_digest(stack, done, 64 * MIB) == digest
    name = done["os-vol-mig-status-attr:name_id"]
    assert files(stack) == {f"silver/volume-{name}"}, "one backend file, nothing else"
    keys = keys_of(stack)
    assert not key_exists(keys, api.project, old_key)
    assert key_exists(keys, api.project, done["encryption_key_id"])
    assert_usage_is_recount(stack, api.project)
    assert backend_file(stack, done).exists()


def test_worker_killed_mid_copy(tmp_path: Path, temporal: DevServer, databases: Databases) -> None:
    settings = stack_settings(
        tmp_path, databases.new("sqlite"), temporal.address, backends=two_backends(tmp_path)
    )
    api_stack = ThreadStack(settings, worker=False).start()
    worker = Process(settings, "worker", log=tmp_path / "worker.log").start()
    try:
        wait_backends_reported(settings.db_url, count=2)

        def kill_the_worker(hold: Path) -> None:
            worker.kill()
            hold.unlink()
            worker.start()

        migrate_through(api_stack, kill_the_worker)
    finally:
        worker.stop()
        api_stack.stop()


def test_temporal_restarted_mid_copy(tmp_path: Path, databases: Databases) -> None:
    server = DevServer(
        port=free_port(),
        ui_port=None,
        db_file=tmp_path / "temporal.sqlite",
        log_file=tmp_path / "temporal.log",
    )
    server.start()
    settings = stack_settings(
        tmp_path, databases.new("sqlite"), server.address, backends=two_backends(tmp_path)
    )
    stack = ThreadStack(settings).start()
    try:
        wait_backends_reported(settings.db_url, count=2)

        def restart_temporal(hold: Path) -> None:
            server.stop()
            hold.unlink()
            server.start()

        migrate_through(stack, restart_temporal)
    finally:
        stack.stop()
        server.stop()
