"""Activities that share their dependencies (a database, a driver) register themselves.

A worker lists a group's activities with `all()`, so adding an activity to a group is the whole
registration: no list elsewhere to keep in step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ActivityGroup:
    def all(self) -> list[Callable[..., Any]]:
        """Every `@activity.defn` method of this group, bound, in name order."""
        return [
            getattr(self, name)
            for name in sorted(dir(type(self)))
            if hasattr(getattr(type(self), name, None), "__temporal_activity_definition")
        ]
