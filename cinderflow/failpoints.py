"""Named pause points for crash tests; inert unless a failpoint directory is configured.

A test creates `<dir>/<name>.hold`. A process that reaches `await failpoints.reach(name)` writes
`<dir>/<name>.reached` (containing its pid) and waits until the hold file is gone, so the test
can SIGKILL it at exactly that point, which is how the durability invariant is proven without
mocking any part of cinderflow. Rewriting the hold file with other content lets the process
held at it go on, to hold again the next time it passes (a copy stepped one progress report
at a time).
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

    def _hold(self, name: str) -> tuple[Path, str] | None:
        """The hold file of `name` and its content if it exists now (then `.reached` is
        written)."""
        if self.directory is None:
            return None
        hold = self.directory / f"{name}.hold"
        content = _content(hold)
        if content is None:
            return None
        (self.directory / f"{name}.reached").write_text(str(os.getpid()))
        return hold, content

    async def reach(self, name: str) -> None:
        held = self._hold(name)
        while held is not None and _content(held[0]) == held[1]:
            await asyncio.sleep(POLL_S)

    def reach_blocking(self, name: str) -> None:
        """The same, for a thread (a driver call's progress report)."""
        held = self._hold(name)
        while held is not None and _content(held[0]) == held[1]:
            time.sleep(POLL_S)


def _content(hold: Path) -> str | None:
    try:
        return hold.read_text()
    except FileNotFoundError:
        return None
