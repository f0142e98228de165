"""The context of one driver call: how a long driver method reports progress, notices that
its operation no longer wants it, and learns what an earlier attempt of the same call got to.

A driver method runs in a worker thread while its activity heartbeats. It finds its context
with `current_call()`:

    call = current_call()
    call.progress(copied, total)      # sent as the heartbeat's details
    if call.cancelled(): ...          # the operation was stopped: clean up, raise
    call.wait_cancelled(5.0)          # or wait for that while the backend works
    call.resumed                      # the last progress an earlier attempt reported, or None
    call.attempt                      # 1 for the first attempt

Outside an activity (unit tests, tools) `current_call()` is a detached context that reports
nowhere. This module is imported by driver code only; it does no I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")
SCALE = 1_000_000
"""The whole of a call of several stages, in progress reports (see `within`)."""


class DriverCall:
    def __init__(
        self,
        *,
        attempt: int = 1,
        resumed: dict[str, Any] | None = None,
        checkpoint: Callable[[str], None] | None = None,
    ) -> None:
        self.attempt = attempt
        """Which attempt of this call this is (retries after a crash or a transient error)."""
        self.resumed = resumed
        """The last `progress` an earlier attempt reported (`{"done": .., "total": ..}`)."""
        self._checkpoint = checkpoint
        self._lock = threading.Lock()
        self._details: dict[str, Any] | None = dict(resumed) if resumed else None
        """Until this attempt reports, its heartbeats carry on the last attempt's progress."""
        self._cancelled = threading.Event()
        self.started = False
        """The driver method is running (in its thread): it changes the backend now."""
        self._span = (0.0, 1.0)

    def within(self, start: float, end: float) -> None:
        """Later `progress` reports fill the part `start`..`end` (fractions) of the whole
        call: a call of several stages (download, then convert) shows one rising figure."""
        self._span = (start, end)

    def progress(self, done: int, total: int) -> None:
        """How far the call has got, in any unit (bytes copied of total). The latest value
        goes out with the next heartbeat, and a retry of this call sees it as `resumed`."""
        start, end = self._span
        if (start, end) != (0.0, 1.0) and total:
            done, total = int(SCALE * (start + (end - start) * done / total)), SCALE
        with self._lock:
            self._details = {"done": int(done), "total": int(total)}
        if self._checkpoint is not None:
            self._checkpoint("progress")

    def details(self) -> dict[str, Any] | None:
        """The latest progress (the activity side sends it)."""
        with self._lock:
            return dict(self._details) if self._details else None

    def cancelled(self) -> bool:
        """The operation asked this call to stop (a reset or cancel): a driver that can should
        stop, remove what it half-made, and raise."""
        return self._cancelled.is_set()

    def wait_cancelled(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the operation to ask this call to stop (a driver
        waiting on its backend can wait for that too); True if it asked."""
        return self._cancelled.wait(timeout)

    def cancel(self) -> bool:
        """Called by the activity when Temporal cancels it: True if the driver method runs
        (it ends by itself), False if it never will (it has not started and now will not)."""
        with self._lock:
            self._cancelled.set()
            return self.started

    def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` with this as the current call (in the thread that runs the driver), unless
        the call was cancelled before it started."""
        with self._lock:
            if self._cancelled.is_set():
                raise CallCancelled("cancelled before the driver method started")
            self.started = True
        token = _CURRENT.set(self)
        try:
            return fn()
        finally:
            _CURRENT.reset(token)


class CallCancelled(Exception):
    """The call was cancelled before its driver method began: it never ran."""


_CURRENT: ContextVar[DriverCall | None] = ContextVar("driver_call", default=None)


def current_call() -> DriverCall:
    """The call the running driver method belongs to (a detached one outside activities)."""
    return _CURRENT.get() or DriverCall()
