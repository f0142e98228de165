"""A cancelled blocking call ends only once its thread has: a cut database step cannot commit
after its workflow has moved on (threads.run_blocking)."""

from __future__ import annotations

import asyncio
import threading

from cinderflow.threads import pool, run_blocking


async def test_a_cancel_waits_for_the_running_call_and_drops_a_queued_one() -> None:
    executor = pool(1, "test")
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def running() -> None:
        started.set()
        release.wait(10)
        ran.append("running")

    def queued() -> None:
        ran.append("queued")

    first = asyncio.ensure_future(run_blocking(executor, running))
    second = asyncio.ensure_future(run_blocking(executor, queued))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
    first.cancel()
    second.cancel()
    for _ in range(20):  # a cancel that did not wait would have ended within these turns
        await asyncio.sleep(0)
    assert not first.done(), "the cancel returned while its call still ran"
    release.set()
    for task in (first, second):
        try:
            await task
            raise AssertionError("not cancelled")
        except asyncio.CancelledError:
            pass
    assert ran == ["running"]  # the queued call never ran
    executor.shutdown(wait=True)
