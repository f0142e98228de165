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

    async def reach(self, name: str) -> None:
        if self.directory is None:
            return
        hold = self.directory / f"{name}.hold"
        if not hold.exists():
            return
        (self.directory / f"{name}.reached").write_text(str(os.getpid()))
        while hold.exists():
            await asyncio.sleep(POLL_S)

    def reach_blocking(self, name: str) -> None:
        """The same, for a thread (a driver call's progress report)."""
        if self.directory is None:
            return
        hold = self.directory / f"{name}.hold"
        if not hold.exists():
            return
        (self.directory / f"{name}.reached").write_text(str(os.getpid()))
        while hold.exists():
            time.sleep(POLL_S)
