"""os-retype on a stack with two file backends (`gold`, `silver`): Cinder's checks, in place,
by migration (data copy, encryption changes), progress, resets and quota."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Databases
from tests.helpers import (
    Api,
    Background,
    ThreadStack,
    assert_fault,
    assert_usage_is_recount,
    available_snapshot,
    history_steps,
    hold_failpoint,
    poll,
    reset_in_progress,
    save_history,
    stack_settings,
    step_failpoint,
    wait_failpoint,
    workflows_of,
)
from tests.retyping import (
    COPY_PROGRESS,
    MIB,
    backend_file,
    backend_files,
    guest_digest,
    key_exists,
    keys_of,
    message_of,
    migration_key,
    new_type,
    progress_of,
    retype,
    root,
    settled,
    two_backends,
    wait_retype_ended,
    write_guest,
)


@pytest.fixture(scope="module")
def two(
    tmp_path_factory: pytest.TempPathFactory, temporal, databases: Databases
) -> Iterator[ThreadStack]:
    """A stack whose worker serves two backends."""
    tmp = tmp_path_factory.mktemp("two-backends")
    settings = stack_settings(
        tmp, databases.new("sqlite"), temporal.address, backends=two_backends(tmp)
    )
    running = ThreadStack(settings).start()
    yield running
    running.stop()


@pytest.fixture
def api(two: ThreadStack) -> Api:
    return two.api()


# Cinder's checks ---------------------------------------------------------------------------


def test_unknown_type_same_type_and_bad_bodies(api: Api) -> None:
    gold = new_type(api, "gold")
    volume = api.available_volume(1, volume_type=gold["name"])
    assert_fault(
        retype(api, volume["id"], "no-such-type"),
        404,
        "Volume type with name no-such-type could not be found.",
    )
    assert_fault(retype(api, volume["id"], gold["name"]), 400, "requested type has to be different")
    assert_fault(
        retype(api, volume["id"], gold["id"]), 400, "Retype needs volume to be in available"
    )
    assert_fault(retype(api, volume["id"], gold["name"], policy="sometimes"), 400)
    bad = api.post(f"/volumes/{volume['id']}/action", {"os-retype": {"migration_policy": "never"}})
    assert_fault(bad, 400)
    assert api.volume(volume["id"])["status"] == "available"


def test_quota_of_the_new_type_is_checked(api: Api, two: ThreadStack) -> None:
    gold, other = new_type(api, "gold"), new_type(api, "gold")
    volume = api.available_volume(1, volume_type=gold["name"])
    quota = {"quota_set": {f"volumes_{other['name']}": 0}}
    assert api.put(f"/os-quota-sets/{api.project}", quota).status_code == 200
    assert_fault(retype(api, volume["id"], other["name"]), 413, f"volumes_{other['name']}")
    assert api.volume(volume["id"])["status"] == "available"
    assert_usage_is_recount(two, api.project)


def test_members_retype_their_own(api: Api, two: ThreadStack) -> None:
    gold, other = new_type(api, "gold"), new_type(api, "gold", **{"file:tier": "b"})
    member = api.as_user("alice")
    volume = member.available_volume(1, volume_type=gold["name"])
    assert retype(member, volume["id"], other["name"]).status_code == 202
    assert settled(api, volume["id"])["volume_type"] == other["name"]


# In place ------------------------------------------------------------------------------------


def test_in_place_keeps_the_file_and_moves_the_quota(api: Api, two: ThreadStack) -> None:
    gold, other = new_type(api, "gold"), new_type(api, "gold", **{"file:tier": "b"})
    volume = api.available_volume(1, volume_type=gold["name"])
    before = os.stat(backend_file(two, volume))
    available_snapshot(api, volume["id"])
    assert retype(api, volume["id"], other["name"]).status_code == 202
    done = settled(api, volume["id"])
    assert done["status"] == "available" and done["volume_type"] == other["name"]
    assert done["os-vol-mig-status-attr:name_id"] is None
    after = os.stat(backend_file(two, done))
    assert (after.st_ino, after.st_dev) == (before.st_ino, before.st_dev)  # no copy
    limits = api.get(f"/os-quota-sets/{api.project}", params={"usage": "true"}).json()["quota_set"]
    assert limits[f"volumes_{other['name']}"]["in_use"] == 1
    assert limits[f"volumes_{gold['name']}"]["in_use"] == 0
    assert limits[f"snapshots_{other['name']}"]["in_use"] == 1  # the snapshot follows its volume
    assert_usage_is_recount(two, api.project)
    save_history(two.settings.temporal_address, volume["id"], "retype", "RetypeVolume-in-place")


def test_never_to_another_backend_returns_with_a_message(api: Api, two: ThreadStack) -> None:
    gold, silver = new_type(api, "gold"), new_type(api, "silver")
    volume = api.available_volume(1, volume_type=gold["name"])
    assert retype(api, volume["id"], silver["name"], policy="never").status_code == 202
    wait_retype_ended(two, volume["id"])
    back = api.volume(volume["id"])
    assert back["status"] == "available" and back["volume_type"] == gold["name"]
    # Cinder's scheduler looks at the volume's own backend only: no valid backend
    assert message_of(api, volume["id"]) == (
        "retype volume:Could not find any available weighted backend."
    )
    assert_usage_is_recount(two, api.project)
    save_history(two.settings.temporal_address, volume["id"], "retype", "RetypeVolume-never")


def test_never_refuses_a_copy_on_the_same_backend(api: Api, two: ThreadStack) -> None:
    """The own backend fits the new type, but a new encryption needs a copy: `never` says no."""
    gold, encrypted = new_type(api, "gold"), new_type(api, "gold", encrypted=True)
    volume = api.available_volume(1, volume_type=gold["name"])
    assert retype(api, volume["id"], encrypted["name"], policy=None).status_code == 202
    wait_retype_ended(two, volume["id"])
    back = api.volume(volume["id"])
    assert back["status"] == "available" and back["volume_type"] == gold["name"]
    assert back["encrypted"] is False
    assert message_of(api, volume["id"]) == (
        "retype volume:Retype requires migration but is not allowed."
    )
    assert_usage_is_recount(two, api.project)


def test_snapshots_block_a_migration(api: Api, two: ThreadStack) -> None:
    gold, silver = new_type(api, "gold"), new_type(api, "silver")
    volume = api.available_volume(1, volume_type=gold["name"])
    available_snapshot(api, volume["id"])
    assert retype(api, volume["id"], silver["name"]).status_code == 202
    wait_retype_ended(two, volume["id"])
    back = api.volume(volume["id"])
    assert back["status"] == "available" and back["volume_type"] == gold["name"]
    assert back["os-vol-mig-status-attr:migstat"] is None  # it never began
    assert message_of(api, volume["id"]) == "retype volume:Volume must not have snapshots."


# Migration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source_encrypted", "target_encrypted", "same_backend"),
    [
        (False, False, False),
        (False, True, True),
        (True, False, False),
        (True, True, False),
    ],
    ids=["plain-to-other-backend", "plain-to-luks", "luks-to-plain", "luks-new-key"],
)
def test_migration_keeps_the_data(
    api: Api, two: ThreadStack, source_encrypted: bool, target_encrypted: bool, same_backend: bool
) -> None:
    source_type = new_type(api, "gold", encrypted=source_encrypted)
    target_type = new_type(api, "gold" if same_backend else "silver", encrypted=target_encrypted)
    volume = api.available_volume(1, volume_type=source_type["name"])
    write_guest(two, volume, 2 * MIB, os.urandom(64 * 1024))
    digest = guest_digest(two, volume, 4 * MIB)
    old_file, old_key = backend_file(two, volume), volume["encryption_key_id"]
    assert retype(api, volume["id"], target_type["name"]).status_code == 202
    done = settled(api, volume["id"])
    assert done["status"] == "available" and done["volume_type"] == target_type["name"]
    assert done["os-vol-mig-status-attr:migstat"] == "success"
    assert done["os-vol-mig-status-attr:name_id"] not in (None, volume["id"])
    assert (
        done["os-vol-host-attr:host"].split("@")[1].startswith("gold" if same_backend else "silver")
    )
    assert done["encrypted"] is target_encrypted
    if target_encrypted:
        assert done["encryption_key_id"] and done["encryption_key_id"] != old_key
    else:
        assert done["encryption_key_id"] is None
    assert guest_digest(two, done, 4 * MIB) == digest
    poll(lambda: not old_file.exists(), what="the source file deleted")
    if old_key:
        keys = keys_of(two)
        poll(lambda: not key_exists(keys, api.project, old_key), what="the old key deleted")
    assert_usage_is_recount(two, api.project)
    workflow_id = wait_retype_ended(two, volume["id"])
    steps = history_steps(two.settings.temporal_address, workflow_id)
    assert "driver.copy_volume_data" in steps and "driver.create_volume" in steps
    if source_encrypted == target_encrypted == False:  # noqa: E712
        save_history(
            two.settings.temporal_address, volume["id"], "retype", "RetypeVolume-migration"
        )


# Progress and reset ------------------------------------------------------------------------


def progress_of_workflow(stack: ThreadStack, volume_id: str) -> str:
    """What a reset of the volume's running retype is doing, in its words."""
    address = stack.settings.temporal_address
    running = workflows_of(address, volume_id, "retype", running=True)
    return reset_in_progress(address, running[-1]) if running else ""


def test_progress_then_reset_mid_copy_leaves_only_the_source(api: Api, two: ThreadStack) -> None:
    """While the copy runs, an admin at 3.72 sees `migration_progress` rise (a member never
    does, nor does 3.71); a reset mid-copy stops it: the destination and its key are gone, the
    reservation released, the source intact and usable, `migration_status` error."""
    gold, silver = new_type(api, "gold"), new_type(api, "silver", encrypted=True)
    volume = api.available_volume(1, volume_type=gold["name"])
    write_guest(two, volume, 0, os.urandom(300 * MIB))
    digest = guest_digest(two, volume, 300 * MIB)
    silver_files = backend_files(two, "silver")
    hold = hold_failpoint(two.settings, COPY_PROGRESS)
    try:
        assert retype(api, volume["id"], silver["name"]).status_code == 202
        seen: list[int] = []
        for _ in range(4):  # let the copy go on one progress report at a time
            wait_failpoint(two.settings, COPY_PROGRESS)
            shown = poll(
                lambda: (
                    (p := progress_of(api, volume["id"])) is not None
                    and (not seen or int(p) > seen[-1])
                    and p
                ),
                what="migration_progress rising",
            )
            seen.append(int(shown))
            step_failpoint(two.settings, COPY_PROGRESS)
        rising = seen[1:]  # the first may be qemu-img's 0% report
        assert all(0 < p < 100 for p in rising) and rising == sorted(set(rising)), seen
        migrating = api.volume(volume["id"])
        assert migrating["status"] == "retyping"
        assert migrating["os-vol-mig-status-attr:migstat"] == "migrating"
        member = api.as_user("alice")
        assert (
            "migration_progress"
            not in member.get(f"/volumes/{volume['id']}", version="3.72").json()["volume"]
        )
        assert (
            "migration_progress"
            not in api.get(f"/volumes/{volume['id']}", version="3.71").json()["volume"]
        )
        key_id = poll(lambda: migration_key(two, volume["id"]), what="destination key")
        wait_failpoint(two.settings, COPY_PROGRESS)
        reset = {"os-reset_status": {"status": "available"}}
        # the reset waits for the copy to stop, which the held copy does once let go
        asked = Background(lambda: api.post(f"/volumes/{volume['id']}/action", reset))
        poll(
            lambda: "waiting for" in (progress_of_workflow(two, volume["id"]) or ""),
            what="the reset waiting for the copy",
        )
        hold.unlink()
        assert asked.result().status_code == 202
    finally:
        hold.unlink(missing_ok=True)
    wait_retype_ended(two, volume["id"])
    save_history(
        two.settings.temporal_address, volume["id"], "retype", "RetypeVolume-reset-mid-copy"
    )
    after = api.volume(volume["id"])
    assert after["status"] == "available" and after["volume_type"] == gold["name"]
    assert after["os-vol-mig-status-attr:migstat"] == "error"
    assert after["os-vol-mig-status-attr:name_id"] is None
    assert backend_files(two, "silver") == silver_files  # no destination, no partial
    assert not (root(two, "gold") / ".exports" / f"volume-{volume['id']}").exists()
    assert not key_exists(keys_of(two), api.project, key_id)
    assert guest_digest(two, after, 300 * MIB) == digest
    assert_usage_is_recount(two, api.project)
    # usable: the same retype now runs to its end
    assert retype(api, volume["id"], silver["name"]).status_code == 202
    done = settled(api, volume["id"])
    assert done["volume_type"] == silver["name"] and done["encrypted"] is True
    assert guest_digest(two, done, 300 * MIB) == digest
    save_history(two.settings.temporal_address, volume["id"], "retype", "RetypeVolume-encrypting")


# os-migrate_volume -------------------------------------------------------------------------


def migrate(api: Api, volume_id: str, host: str, **flags: bool):
    return api.post(f"/volumes/{volume_id}/action", {"os-migrate_volume": {"host": host, **flags}})


def test_admin_migrate_keeps_the_type_and_moves_the_data(api: Api, two: ThreadStack) -> None:
    volume = api.available_volume(1)  # the default type fits either backend
    write_guest(two, volume, 3 * MIB, os.urandom(MIB))
    digest, old_file = guest_digest(two, volume, 4 * MIB), backend_file(two, volume)
    here = volume["os-vol-host-attr:host"].split("@")[1].split("#")[0]
    there = "silver" if here == "gold" else "gold"
    host = f"{two.settings.host}@{there}"
    assert_fault(
        migrate(api, volume["id"], f"{two.settings.host}@{here}"),
        400,
        "destination host/cluster must be different than the current one",
    )
    assert_fault(
        migrate(api, volume["id"], "nowhere@x"),
        400,
        "Invalid host: No available service named nowhere@x",
    )
    assert migrate(api.as_user("alice"), volume["id"], host).status_code == 403
    hold = hold_failpoint(two.settings, COPY_PROGRESS)
    try:
        assert migrate(api, volume["id"], host, lock_volume=True).status_code == 202
        wait_failpoint(two.settings, COPY_PROGRESS)
        assert api.volume(volume["id"])["status"] == "maintenance"
        assert_fault(migrate(api, volume["id"], host), 400, "status must be available or in-use")
    finally:
        hold.unlink()
    done = settled(api, volume["id"])
    assert done["status"] == "available" and done["volume_type"] == volume["volume_type"]
    assert done["os-vol-host-attr:host"].split("@")[1].startswith(there)
    assert done["os-vol-mig-status-attr:migstat"] == "success"
    assert guest_digest(two, done, 4 * MIB) == digest
    poll(lambda: not old_file.exists(), what="the source file deleted")
    workflow_id = wait_retype_ended(two, volume["id"], operation="migrate")
    assert "driver.copy_volume_data" in history_steps(two.settings.temporal_address, workflow_id)
    save_history(two.settings.temporal_address, volume["id"], "migrate", "RetypeVolume-migrate")
    assert_usage_is_recount(two, api.project)
    available_snapshot(api, volume["id"])
    assert_fault(migrate(api, volume["id"], f"{two.settings.host}@{here}"), 400, "snapshots")


def test_operations_show_the_copy_rising_and_a_cancel_stops_it(api: Api, two: ThreadStack) -> None:
    """The operations API shows a migration `running` with rising `progress`; the member's
    cancel mid-copy ends it `cancelled`: the volume back `available` with its type, no
    destination file, the destination key deleted, quota equal to a recount."""
    member = api.as_user("alice")
    gold, silver = new_type(api, "gold"), new_type(api, "silver", encrypted=True)
    volume = api.volume(member.available_volume(1, volume_type=gold["name"])["id"])
    write_guest(two, volume, 0, os.urandom(200 * MIB))
    digest = guest_digest(two, volume, 200 * MIB)
    silver_files = backend_files(two, "silver")
    hold = hold_failpoint(two.settings, COPY_PROGRESS)
    try:
        assert retype(member, volume["id"], silver["name"]).status_code == 202
        seen: list[int] = []
        for _ in range(3):
            wait_failpoint(two.settings, COPY_PROGRESS)
            shown = poll(
                lambda: (
                    (
                        ops := member.get(
                            "/operations", params={"resource_id": volume["id"], "status": "running"}
                        ).json()["operations"]
                    )
                    and ops[0]["progress"] is not None
                    and (not seen or ops[0]["progress"] > seen[-1])
                    and ops[0]
                ),
                what="the operation's progress rising",
            )
            seen.append(shown["progress"])
            assert shown["operation"] == "retype" and shown["cancellable"] is True, shown
            step_failpoint(two.settings, COPY_PROGRESS)
        assert seen == sorted(set(seen)) and 0 < seen[-1] < 100, seen
        wait_failpoint(two.settings, COPY_PROGRESS)
        key_id = poll(lambda: migration_key(two, volume["id"]), what="destination key")
        cancel = member.post(f"/operations/{shown['id']}/action", {"cancel": None})
        assert cancel.status_code == 202, cancel.text
        hold.unlink()  # the held copy sees the cancel and stops
        ended = member.get(f"/operations/{shown['id']}?wait=60").json()["operation"]
    finally:
        hold.unlink(missing_ok=True)
    assert ended["status"] == "cancelled" and ended["finished_at"], ended
    wait_retype_ended(two, volume["id"])
    save_history(
        two.settings.temporal_address, volume["id"], "retype", "RetypeVolume-cancel-update-mid-copy"
    )
    after = api.volume(volume["id"])
    assert after["status"] == "available" and after["volume_type"] == gold["name"]
    assert after["os-vol-mig-status-attr:migstat"] == "error"
    assert backend_files(two, "silver") == silver_files  # no destination, no partial
    assert not key_exists(keys_of(two), api.project, key_id)
    assert guest_digest(two, after, 200 * MIB) == digest
    assert_usage_is_recount(two, api.project)


def test_ops_watch_draws_a_rising_bar_in_a_terminal(
    api: Api, two: ThreadStack, tmp_path: Path
) -> None:
    """`cinderflow ops watch <volume>` under tmux: the captured pane shows the bar's
    percentage advance as the copy goes on, then the operation's end."""
    gold, silver = new_type(api, "gold"), new_type(api, "silver")
    volume = api.volume(api.available_volume(1, volume_type=gold["name"])["id"])
    write_guest(two, volume, 0, os.urandom(100 * MIB))
    socket = f"cf-{uuid.uuid4().hex[:8]}"
    cinderflow = str(Path(sys.executable).parent / "cinderflow")
    command = (
        f"{cinderflow} ops --url {two.url} --project {api.project} watch {volume['id']}; sleep 600"
    )
    hold = hold_failpoint(two.settings, COPY_PROGRESS)

    def pane() -> str:
        return subprocess.run(
            ["tmux", "-L", socket, "capture-pane", "-p", "-t", "watch"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def percent() -> int | None:
        found = re.findall(r"(\d+)%", pane())
        return int(found[-1]) if found else None

    try:
        assert retype(api, volume["id"], silver["name"]).status_code == 202
        subprocess.run(
            [
                "tmux",
                "-L",
                socket,
                "new-session",
                "-d",
                "-s",
                "watch",
                "-x",
                "120",
                "-y",
                "12",
                command,
            ],
            check=True,
            env={**os.environ, "TERM": "xterm-256color"},
        )
        seen: list[int] = []
        for _ in range(3):
            wait_failpoint(two.settings, COPY_PROGRESS)
            shown = poll(  # the first may be qemu-img's 0% report
                lambda: (p := percent()) is not None and (not seen or p > seen[-1]) and (p,),
                what="the bar advancing",
            )
            seen.append(shown[0])
            step_failpoint(two.settings, COPY_PROGRESS)
        hold.unlink()
        poll(lambda: f"retype {volume['id']}: succeeded" in pane(), what="the end shown")
    finally:
        hold.unlink(missing_ok=True)
        subprocess.run(["tmux", "-L", socket, "kill-server"], check=False)
    assert seen == sorted(set(seen)), seen
    settled(api, volume["id"])
