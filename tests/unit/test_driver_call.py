"""The driver call context through the real activity wrapper (activities/driver.py): progress
goes out as heartbeat details, a retry sees the last ones as `resumed`, a cancel reaches the
driver's thread; and the file driver reports a real copy's progress."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from cinderflow.activities.driver import DriverActivities
from cinderflow.drivers.base import VolumeDriverError, VolumeRef
from cinderflow.drivers.call import CallCancelled, DriverCall, current_call
from cinderflow.drivers.file import FileDriver
from cinderflow.failpoints import Failpoints
from cinderflow.payloads import VolumeClone
from tests.helpers import poll, poll_async


def environment(**info: Any) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, heartbeat_timeout=timedelta(seconds=0.6), **info)
    return env


def activities(tmp_path: Path) -> DriverActivities:
    driver = FileDriver("files", {"path": str(tmp_path / "volumes")})
    driver.do_setup()
    (tmp_path / "failpoints").mkdir(exist_ok=True)
    return DriverActivities(driver, Failpoints(tmp_path / "failpoints"))


def test_a_copy_reports_progress_as_heartbeat_details(tmp_path: Path) -> None:
    calls = activities(tmp_path)
    root = tmp_path / "volumes"
    source = VolumeRef(id="src", size=1, project_id="p")
    calls.driver.create_volume(source)
    with open(root / "volume-src", "r+b") as handle:
        handle.write(os.urandom(16 << 20))
    hold = tmp_path / "failpoints" / "driver.create_cloned_volume.progress.hold"
    hold.touch()
    beats: list[tuple[Any, ...]] = []
    env = environment()
    env.on_heartbeat = lambda *details: beats.append(details)
    clone = VolumeClone(volume=VolumeRef(id="dst", size=1, project_id="p"), source=source)
    done = threading.Thread(
        target=lambda: asyncio.run(env.run(calls.create_cloned_volume, clone)), daemon=True
    )
    done.start()
    poll(lambda: [b for b in beats if b], what="a heartbeat with the copy's progress")
    hold.unlink()
    done.join(30)
    (details,) = next(b for b in beats if b)
    assert details["total"] == 1 << 30 and 0 <= details["done"] <= details["total"]
    assert (root / "volume-dst").read_bytes()[: 16 << 20] == (root / "volume-src").read_bytes()[
        : 16 << 20
    ]


async def test_a_retry_resumes_from_the_last_progress(tmp_path: Path) -> None:
    calls = activities(tmp_path)
    seen: list[DriverCall] = []
    env = environment(attempt=2, heartbeat_details=[{"done": 5, "total": 10}])
    await env.run(calls._call, "probe", lambda: seen.append(current_call()))
    (call,) = seen
    assert (call.attempt, call.resumed) == (2, {"done": 5, "total": 10})


def test_a_cancel_reaches_a_running_driver_which_ends_the_activity(tmp_path: Path) -> None:
    """Once the driver runs it changes the backend: the activity ends when the driver does,
    with the driver's own result, never before (the workflow waits for that)."""
    calls = activities(tmp_path)
    started, noticed = threading.Event(), threading.Event()

    def driver_method() -> str:
        started.set()
        if current_call().wait_cancelled(30):
            noticed.set()
        return "stopped cleanly"

    env = environment()

    async def run_and_cancel() -> object:
        task = asyncio.ensure_future(env.run(calls._call, "probe", driver_method))
        await poll_async(started.is_set)
        env.cancel()
        return await task

    assert asyncio.run(run_and_cancel()) == "stopped cleanly"
    assert noticed.is_set()


def test_a_cancel_before_the_driver_runs_ends_the_activity_at_once(tmp_path: Path) -> None:
    calls = activities(tmp_path)
    hold = tmp_path / "failpoints" / "driver.probe.before.hold"
    hold.touch()
    ran = threading.Event()
    env = environment()

    async def run_and_cancel() -> None:
        task = asyncio.ensure_future(env.run(calls._call, "probe", ran.set))
        await poll_async((tmp_path / "failpoints" / "driver.probe.before.reached").exists)
        env.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_and_cancel())
    hold.unlink()
    assert not ran.is_set()


def test_a_driver_that_stops_when_asked_ends_as_cancelled(tmp_path: Path) -> None:
    """A driver that notices `cancelled()` and raises has stopped as asked: the activity ends
    as cancelled (a cut, which the operation can retry), not as a driver failure."""
    calls = activities(tmp_path)
    started = threading.Event()

    def driver_method() -> None:
        started.set()
        assert current_call().wait_cancelled(30), "never asked to stop"
        raise VolumeDriverError("the copy was stopped: its operation ended")

    env = environment()

    async def run_and_cancel() -> None:
        task = asyncio.ensure_future(env.run(calls._call, "probe", driver_method))
        await poll_async(started.is_set)
        env.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_and_cancel())


def test_a_call_cancelled_before_it_starts_never_starts() -> None:
    call = DriverCall()
    assert call.cancel() is False  # nothing ran, and now nothing will
    ran = threading.Event()
    with pytest.raises(CallCancelled):
        call.run(ran.set)
    assert not ran.is_set()
