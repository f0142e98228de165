"""Accepting a transfer survives the death of its worker between the driver call and the
final write, and a reset mid-accept compensates: each ends exactly once, quota exact."""

from __future__ import annotations

from tests.api.test_transfers import accept, offer, receiver, settled
from tests.helpers import assert_usage_is_recount, hold_failpoint, poll, wait_failpoint
from tests.workflow.test_durability import Split, split  # noqa: F401 (the fixture)


def test_worker_killed_between_the_driver_and_the_final_write(split: Split) -> None:  # noqa: F811
    api = split.api
    volume = api.available_volume(1)
    created = offer(api, volume["id"])
    other = receiver(api)
    hold = split.hold("driver.accept_transfer.after")
    assert accept(other, created["id"], created["auth_key"]).status_code == 202
    split.wait_reached("driver.accept_transfer.after")
    split.worker.kill()
    hold.unlink()
    assert api.volume(volume["id"])["status"] == "awaiting-transfer"
    split.worker.start()
    moved = settled(api, volume["id"])
    assert moved["status"] == "available"
    assert moved["os-vol-tenant-attr:tenant_id"] == other.project
    assert api.get("/volume-transfers").json()["transfers"] == []
    assert_usage_is_recount(split.api_stack, api.project, other.project)
    logs = list(split.settings.data_dir.glob("*.log"))  # the worker's
    assert logs
    for log in logs:
        assert created["auth_key"] not in log.read_text(), log


def test_a_reset_mid_accept_compensates(split: Split) -> None:  # noqa: F811
    api = split.api
    volume = api.available_volume(1)
    created = offer(api, volume["id"])
    other = receiver(api)
    point = "driver.accept_transfer.before"
    hold = hold_failpoint(split.settings, point)
    try:
        assert accept(other, created["id"], created["auth_key"]).status_code == 202
        wait_failpoint(split.settings, point)
        reset = {"os-reset_status": {"status": "error"}}
        assert api.post(f"/volumes/{volume['id']}/action", reset).status_code == 202
    finally:
        hold.unlink()
    poll(lambda: api.volume(volume["id"])["status"] == "error", what="reset written")
    still = api.volume(volume["id"])
    assert still["os-vol-tenant-attr:tenant_id"] == api.project
    assert_usage_is_recount(split.api_stack, api.project, other.project)
