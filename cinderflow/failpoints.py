"""Named pause points for crash tests; inert unless a failpoint directory is configured.

A test creates `<dir>/<name>.hold`. A process that reaches `await failpoints.reach(name)` writes
`<dir>/<name>.reached` (containing its pid) and waits until the hold file is gone, so the test
can SIGKILL it at exactly that point, which is how the durability invariant is proven without
mocking any part of cinderflow.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

POLL_S = 0.05


class Failpoints:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def _hold(self, name: str) -> Path | None:
        """The hold file of `name` if it exists now (then `.reached` is written)."""
        if self.directory is None:
            return None
        hold = self.directory / f"{name}.hold"
        if not hold.exists():
            return None
        (self.directory / f"{name}.reached").write_text(str(os.getpid()))
        return hold

    async def reach(self, name: str) -> None:
        hold = self._hold(name)
        while hold is not None and hold.exists():
            await asyncio.sleep(POLL_S)

    def reach_blocking(self, name: str) -> None:
        """The same, for a thread (a driver call's progress report)."""
        hold = self._hold(name)
        while hold is not None and hold.exists():
            time.sleep(POLL_S)
