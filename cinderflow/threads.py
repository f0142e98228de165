"""Dedicated thread pools for blocking work in async code.

A worker runs three kinds of blocking calls: driver calls (seconds to hours), database steps
(milliseconds) and each backend's stats report (its heartbeat). Each kind gets its own pool, so a
burst of slow driver calls can neither starve the database steps of every workflow nor stop a
backend's heartbeat and make it look down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def pool(size: int, name: str) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=size, thread_name_prefix=name)


async def run_blocking(executor: Executor | None, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in `executor` (None: the loop's default pool, as in the API process).

    Cancelled, it ends only once `fn` has: a call still queued never runs, one that runs is
    waited for. A cut step (a local activity is cancelled in-process, at once) must not commit
    its transaction after its workflow has moved on to a reset or to the step's next attempt.
    """
    if executor is None:
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))
    submitted = executor.submit(fn, *args)
    waited = asyncio.wrap_future(submitted)
    try:
        return await asyncio.shield(waited)
    except asyncio.CancelledError:
        if not submitted.cancel():
            while not waited.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(waited)
            if not waited.cancelled():
                waited.exception()  # retrieved: the cancel is what the caller hears
        raise
