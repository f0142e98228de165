"""Dedicated thread pools for blocking work in async code.

A worker runs three kinds of blocking calls: driver calls (seconds to hours), database steps
(milliseconds) and each backend's stats report (its heartbeat). Each kind gets its own pool, so a
burst of slow driver calls can neither starve the database steps of every workflow nor stop a
backend's heartbeat and make it look down.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def pool(size: int, name: str) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=size, thread_name_prefix=name)


async def run_blocking(executor: Executor | None, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in `executor` (None: the loop's default pool, as in the API process)."""
    return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(fn, *args))
