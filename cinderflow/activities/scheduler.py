"""Backend selection, after Cinder's filter scheduler: filters, then a capacity weigher.

Backends are the `cinder-volume` service rows their workers keep fresh with driver stats.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlmodel import select
from temporalio import activity

from cinderflow.activities.volumes import lost_ownership
from cinderflow.db import volumes as volume_db
from cinderflow.db.cas import compare_and_swap
from cinderflow.db.engine import Database
from cinderflow.db.models import Service, Volume, utcnow
from cinderflow.payloads import Placement
from cinderflow.settings import Settings

VOLUME_BINARY = "cinder-volume"


@dataclass(frozen=True)
class Request:
    size: int
    availability_zone: str
    extra_specs: dict[str, str]


def _number(value: Any) -> float | None:
    """A capacity figure, or None for 'unknown'/'infinite'."""
    return float(value) if isinstance(value, int | float) else None


def rejection(service: Service, request: Request, now_cutoff: Any) -> str | None:
    """Why `service` cannot take the request, or None if it can."""
    caps = service.capabilities or {}
    if service.disabled:
        return "disabled"
    if service.updated_at is None or service.updated_at < now_cutoff:
        return "down (no recent stats)"
    if caps.get("backend_state", "up") != "up":
        return "backend_state is down"
    if service.availability_zone != request.availability_zone:
        return f"not in availability zone {request.availability_zone}"
    wanted = request.extra_specs.get("volume_backend_name")
    if wanted is not None and caps.get("volume_backend_name") != wanted:
        return f"volume_backend_name is not {wanted}"
    if usable_capacity(caps, request.size) is None:
        return "insufficient free capacity"
    return None


def usable_capacity(caps: dict[str, Any], size: int) -> float | None:
    """Capacity left for the request (the weight), None if it does not fit (CapacityFilter)."""
    total, free = _number(caps.get("total_capacity_gb")), _number(caps.get("free_capacity_gb"))
    if total is None or free is None:
        return math.inf  # 'unknown'/'infinite' pass, weighed last-but-possible as in Cinder
    free -= math.floor(total * float(caps.get("reserved_percentage", 0)) / 100)
    if caps.get("thin_provisioning_support"):
        ratio = float(caps.get("max_over_subscription_ratio", 1.0))
        provisioned = float(caps.get("provisioned_capacity_gb", 0.0))
        if total <= 0 or (provisioned + size) / total > ratio:
            return None
        free *= max(ratio, 1.0)
    return free - size if free >= size else None


def choose(services: list[Service], request: Request, cutoff: Any) -> tuple[Service | None, str]:
    fitting = [s for s in services if rejection(s, request, cutoff) is None]
    if not fitting:
        reasons = "; ".join(f"{s.host}: {rejection(s, request, cutoff)}" for s in services)
        return None, "No valid backend was found. " + (reasons or "No backend is reporting.")
    best = max(fitting, key=lambda s: usable_capacity(s.capabilities, request.size) or 0.0)
    return best, ""


def pool_host(service: Service) -> str:
    pool = service.capabilities.get("pool_name") or service.capabilities.get(
        "volume_backend_name", service.host.partition("@")[2]
    )
    return f"{service.host}#{pool}"


class SchedulerActivities:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.service_down_time = timedelta(seconds=settings.service_down_time)

    @activity.defn(name="scheduler.place_volume")
    async def place_volume(self, volume_id: str) -> Placement:
        """Pick a backend for an owned, unplaced volume and record it as the volume's host."""
        return await asyncio.to_thread(self._place, volume_id, activity.info().workflow_id)

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
                services = list(
                    session.exec(select(Service).where(Service.binary == VOLUME_BINARY))
                )
                best, reason = choose(services, request, utcnow() - self.service_down_time)
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
