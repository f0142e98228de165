"""Backend selection, after Cinder's filter scheduler: filters, then a capacity weigher.

Backends are the `cinder-volume` service rows their workers keep fresh with driver stats.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, select
from temporalio import activity

from cinderflow.activities.volumes import lost_ownership
from cinderflow.db import volumes as volume_db
from cinderflow.db.cas import compare_and_swap
from cinderflow.db.engine import Database
from cinderflow.db.models import Service, Volume, utcnow
from cinderflow.payloads import Placement
from cinderflow.settings import Settings
from cinderflow.temporal.queues import backend_of
from cinderflow.threads import run_blocking

VOLUME_BINARY = "cinder-volume"


@dataclass(frozen=True)
class Request:
    size: int
    availability_zone: str
    extra_specs: dict[str, str]


UNKNOWN_CAPACITY_WEIGHT = -1.0
"""'unknown'/'infinite' capacity passes the filter but loses to any known figure (Cinder)."""


@dataclass(frozen=True)
class Candidate:
    """A backend's last report plus what was placed on it since (not yet in its stats)."""

    service: Service
    pending_gb: int = 0


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def rejection(candidate: Candidate, request: Request, cutoff: datetime) -> str | None:
    """Why the candidate cannot take the request, or None if it can."""
    service = candidate.service
    caps = service.capabilities or {}
    if service.disabled:
        return "disabled"
    if service.updated_at is None or service.updated_at < cutoff:
        return "down (no recent stats)"
    if caps.get("backend_state", "up") != "up":
        return "backend_state is down"
    if service.availability_zone != request.availability_zone:
        return f"not in availability zone {request.availability_zone}"
    wanted = request.extra_specs.get("volume_backend_name")
    if wanted is not None and caps.get("volume_backend_name") != wanted:
        return f"volume_backend_name is not {wanted}"
    if usable_capacity(caps, request.size, candidate.pending_gb) is None:
        return "insufficient free capacity"
    return None


def usable_capacity(caps: dict[str, Any], size: int, pending_gb: int = 0) -> float | None:
    """Capacity left after the request (the weight), None if it does not fit (CapacityFilter).

    `pending_gb` was placed since the report: it is taken from free space and added to the
    provisioned space, as Cinder's `consume_from_volume` does between two reports.
    """
    total, free = _number(caps.get("total_capacity_gb")), _number(caps.get("free_capacity_gb"))
    if total is None or free is None:
        return UNKNOWN_CAPACITY_WEIGHT
    free -= pending_gb + math.floor(total * float(caps.get("reserved_percentage", 0)) / 100)
    if caps.get("thin_provisioning_support"):
        ratio = float(caps.get("max_over_subscription_ratio", 1.0))
        provisioned = float(caps.get("provisioned_capacity_gb", 0.0)) + pending_gb
        if total <= 0 or (provisioned + size) / total > ratio:
            return None
        free *= max(ratio, 1.0)
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


def candidates(session: Session) -> list[Candidate]:
    """Every volume backend, with the sizes placed on it that its last report cannot include:
    volumes still `creating`, and volumes created after the report."""
    services = list(session.exec(select(Service).where(Service.binary == VOLUME_BINARY)))
    oldest = min((s.updated_at for s in services if s.updated_at), default=None)
    recent = session.exec(
        select(Volume.host, Volume.size, Volume.status, Volume.created_at).where(
            Volume.host.is_not(None),
            or_(Volume.status == "creating", Volume.created_at > oldest)
            if oldest
            else Volume.status == "creating",
        )
    ).all()
    result = []
    for service in services:
        pending = sum(
            size
            for host, size, status, created_at in recent
            if backend_of(host) == service.host
            and (status == "creating" or (service.updated_at and created_at > service.updated_at))
        )
        result.append(Candidate(service, pending))
    return result


def pool_host(service: Service) -> str:
    pool = service.capabilities.get("pool_name") or service.capabilities.get(
        "volume_backend_name", service.host.partition("@")[2]
    )
    return f"{service.host}#{pool}"


class SchedulerActivities:
    def __init__(self, db: Database, settings: Settings, executor: Executor | None = None) -> None:
        self.db = db
        self.executor = executor
        self.service_down_time = timedelta(seconds=settings.service_down_time)

    @activity.defn(name="scheduler.place_volume")
    async def place_volume(self, volume_id: str) -> Placement:
        """Pick a backend for an owned, unplaced volume and record it as the volume's host."""
        return await run_blocking(
            self.executor, self._place, volume_id, activity.info().workflow_id
        )

    def _place(self, volume_id: str, workflow_id: str) -> Placement:
        with self.db.transaction() as session:
            volume = session.get(Volume, volume_id)
            if volume is None or volume.workflow_id != workflow_id:
                raise lost_ownership(volume_id, workflow_id)
            if volume.host is None:  # else: a retry after this step already committed
                request = Request(
                    size=volume.size,
                    availability_zone=volume.availability_zone,
                    extra_specs=volume_db.extra_specs(session, volume.volume_type_id),
                )
                best, reason = choose(
                    candidates(session), request, utcnow() - self.service_down_time
                )
                if best is None:
                    return Placement(reason=reason)
                compare_and_swap(
                    session,
                    Volume,
                    volume_id,
                    expected={"workflow_id": workflow_id},
                    values={"host": pool_host(best)},
                )
                session.refresh(volume)
            return Placement(volume=volume_db.volume_ref(session, volume))
