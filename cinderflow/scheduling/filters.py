"""Filters and the capacity weigher over backends' last reports (pure functions)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cinderflow.db.models import Service
from cinderflow.scheduling.capabilities import unmet


@dataclass(frozen=True)
class Request:
    """What the volume needs of a backend."""

    size: int
    availability_zone: str
    extra_specs: dict[str, str] = field(default_factory=dict)
    encryption_provider: str | None = None
    online_extend: bool = False
    """The operation extends an attached volume (needs `online_extend_support`)."""


UNKNOWN_CAPACITY_WEIGHT = -1.0
"""'unknown'/'infinite' capacity passes the filter but loses to any known figure (Cinder)."""


@dataclass(frozen=True)
class Candidate:
    """A backend's last report plus what was placed on it since (not yet in its stats)."""

    service: Service
    pending_gb: int = 0


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def unavailable(service: Service, cutoff: datetime) -> str | None:
    """Why the backend takes no volumes at all now (None: it serves): disabled, no report
    since `cutoff` (backends.reports_since), or its own `backend_state` down."""
    if service.disabled:
        return "disabled"
    if service.updated_at is None or service.updated_at < cutoff:
        return "down (no recent stats)"
    if (service.capabilities or {}).get("backend_state", "up") != "up":
        return "backend_state is down"
    return None


def rejection(candidate: Candidate, request: Request, cutoff: datetime) -> str | None:
    """Why the candidate cannot take the request, or None if it can."""
    service = candidate.service
    caps = service.capabilities or {}
    down = unavailable(service, cutoff)
    if down:
        return down
    if service.availability_zone != request.availability_zone:
        return f"not in availability zone {request.availability_zone}"
    missing = unmet(caps, request.extra_specs)
    if missing:
        return missing
    supported = caps.get("encryption_providers")
    provider = request.encryption_provider
    if provider and supported is not None and provider not in supported:
        return (
            f"encryption provider {provider} is not supported "
            f"(supported: {', '.join(supported) or 'none'})"
        )
    if request.online_extend and not caps.get("online_extend_support", True):
        return "cannot extend attached volumes (online_extend_support is false)"
    if usable_capacity(caps, request.size, candidate.pending_gb) is None:
        return "insufficient free capacity"
    return None


def usable_capacity(caps: dict[str, Any], size: int, pending_gb: int = 0) -> float | None:
    """Capacity left after the request (the weight), None if it does not fit (CapacityFilter).

    `pending_gb` was placed since the report, which cannot include it yet. A thick backend
    gave it physical space: it is taken from the free space. A thin backend gave it none (a
    new thin volume allocates nothing): it counts as provisioned, against the
    over-subscription ratio, and is taken from the *virtual* free space (free x ratio), so
    a burst of creates between two reports is admitted as it would be one by one, and what
    exceeds free x ratio is still refused.
    """
    total, free = _number(caps.get("total_capacity_gb")), _number(caps.get("free_capacity_gb"))
    if total is None or free is None:
        return UNKNOWN_CAPACITY_WEIGHT
    free -= math.floor(total * float(caps.get("reserved_percentage", 0)) / 100)
    if caps.get("thin_provisioning_support"):
        ratio = float(caps.get("max_over_subscription_ratio", 1.0))
        provisioned = float(caps.get("provisioned_capacity_gb", 0.0)) + pending_gb
        if total <= 0 or (provisioned + size) / total > ratio:
            return None
        free = free * max(ratio, 1.0) - pending_gb
    else:
        free -= pending_gb
    return free - size if free >= size else None


def choose(
    candidates: list[Candidate], request: Request, cutoff: datetime
) -> tuple[Service | None, str]:
    fitting = [c for c in candidates if rejection(c, request, cutoff) is None]
    if not fitting:
        reasons = "; ".join(
            f"{c.service.host}: {rejection(c, request, cutoff)}" for c in candidates
        )
        return None, "No valid backend was found. " + (reasons or "No backend is reporting.")
    best = max(
        fitting,
        key=lambda c: usable_capacity(c.service.capabilities, request.size, c.pending_gb) or 0.0,
    )
    return best.service, ""


def pool_host(service: Service) -> str:
    pool = service.capabilities.get("pool_name") or service.capabilities.get(
        "volume_backend_name", service.host.partition("@")[2]
    )
    return f"{service.host}#{pool}"
