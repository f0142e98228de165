"""Response builders: database rows to Cinder's JSON shapes, per microversion and role."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cinderflow.api.routing import ApiRequest


@dataclass(frozen=True)
class Gate:
    """A field that exists only from microversion `since` (and only for admins if `admin`)."""

    field: str
    since: str
    admin: bool = False


def gated(req: ApiRequest, values: Mapping[str, Any], gates: Iterable[Gate]) -> dict[str, Any]:
    """The subset of `values` whose gates the request passes."""
    return {
        gate.field: values[gate.field]
        for gate in gates
        if req.at_least(gate.since) and (req.ctx.is_admin or not gate.admin)
    }


def timestamp(value: datetime | None) -> str | None:
    """Cinder's naive UTC ISO format with microseconds."""
    if value is None:
        return None
    return value.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S.%f")
