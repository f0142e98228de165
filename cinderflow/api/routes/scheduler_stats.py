"""`/scheduler-stats/get_pools` (admin): the pools the scheduler can place volumes on, from
the `cinder-volume` service rows every backend worker refreshes with `get_volume_stats()`.

As Cinder's scheduler does, only backends that are enabled and reported within
`service_down_time` are listed. Each backend is one pool, named as volumes' `host` shows it
(`<host>@<backend>#<pool>`); `detail` adds its capabilities: the backend's last report, plus
the pool's name, the gigabytes of the volumes placed on it (`allocated_capacity_gb`) and the
report's time (`timestamp`).

Filters follow Cinder's microversions: from 3.28 `name` and any capability (compared as
Cinder's `_equal_after_convert`), from 3.31 only `name` and `volume_type` (Cinder's default
resource filters for pools; others are 400, for admins too), and `volume_type` (by name or
id; pools whose capabilities meet its extra specs) from 3.35.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy import func
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cinderflow.api import microversions as mv
from cinderflow.api import policy
from cinderflow.api.errors import BadRequest, volume_type_not_found
from cinderflow.api.params import boolean_param
from cinderflow.api.routing import ApiRequest, Router
from cinderflow.api.validation import TRUE_STRINGS
from cinderflow.api.views import timestamp
from cinderflow.db import types as type_db
from cinderflow.db import volumes as volume_db
from cinderflow.db.models import Service, Volume
from cinderflow.scheduling.backends import VOLUME_BINARY, reports_since
from cinderflow.scheduling.capabilities import unmet
from cinderflow.scheduling.filters import pool_host

router = Router()

POLICY = "scheduler_extension:scheduler_stats:get_pools"
POOL_FILTER = "3.28"
"""Cinder's `POOL_FILTER`: filters by name and capabilities."""
POOL_TYPE_FILTER = "3.35"
"""Cinder's `POOL_TYPE_FILTER`: filter by volume type."""
RESOURCE_FILTERS = frozenset({"name", "volume_type"})
"""Cinder's default `resource_filters.json` for `pool`, enforced from 3.31 (admins too)."""


class PoolCapabilities(BaseModel):
    """The backend's last `get_volume_stats()` with Cinder's pool keys; anything else the
    driver reports is passed on."""

    model_config = ConfigDict(extra="allow")

    pool_name: str
    volume_backend_name: str | None
    vendor_name: str | None
    driver_version: str | None
    storage_protocol: str | None
    total_capacity_gb: float | str = Field(description="`unknown` or `infinite` if not known")
    free_capacity_gb: float | str = Field(description="`unknown` or `infinite` if not known")
    allocated_capacity_gb: float = Field(description="the sizes of the volumes placed on it")
    provisioned_capacity_gb: float
    reserved_percentage: float
    max_over_subscription_ratio: float | str
    thin_provisioning_support: bool
    thick_provisioning_support: bool
    timestamp: str = Field(description="when the backend reported these")


class Pool(BaseModel):
    name: str = Field(description="`<host>@<backend>#<pool>`, as volumes' host shows it")
    capabilities: PoolCapabilities | SkipJsonSchema[None] = Field(
        default=None, description="with `detail=true` only"
    )


class PoolList(BaseModel):
    pools: list[Pool]


def _filters(req: ApiRequest) -> dict[str, str]:
    """The query's filters as this microversion reads them (Cinder's `get_pools`)."""
    if not req.at_least(POOL_FILTER):
        return {}
    filters = {k: v for k, v in req.query.items() if k != "detail"}
    if req.at_least(mv.RESOURCE_FILTER):
        unknown = [k for k in filters if k not in RESOURCE_FILTERS]
        if unknown:
            raise BadRequest(f"Invalid filters {','.join(unknown)} are found in query options.")
    if not req.at_least(POOL_TYPE_FILTER):
        filters.pop("volume_type", None)
    return filters


def _equal_after_convert(capability: Any, value: str) -> bool:
    """A query value (text) against a capability, as Cinder compares them."""
    if capability is None or isinstance(capability, str):
        return value == capability
    if isinstance(capability, bool):  # oslo's lenient bool_from_string
        return capability is (value.strip().lower() in TRUE_STRINGS)
    return value == str(capability)


def capabilities(service: Service, allocated_gb: float) -> dict[str, Any]:
    """The pool's capabilities: the report as it is, with the keys Cinder's scheduler adds
    (and its defaults for those a driver left out)."""
    stats = dict(service.capabilities)
    thin = bool(stats.get("thin_provisioning_support", False))
    defaults: dict[str, Any] = {
        "volume_backend_name": None,
        "vendor_name": None,
        "driver_version": None,
        "storage_protocol": None,
        "total_capacity_gb": "unknown",
        "free_capacity_gb": "unknown",
        "provisioned_capacity_gb": allocated_gb,
        "reserved_percentage": 0,
        "max_over_subscription_ratio": 1.0,
        "thin_provisioning_support": thin,
        "thick_provisioning_support": not thin,
    }
    return {
        **defaults,
        **stats,
        "pool_name": pool_host(service).partition("#")[2],
        "allocated_capacity_gb": allocated_gb,
        "timestamp": timestamp(service.updated_at),
    }


def _allocated(session: Session) -> dict[str, float]:
    """Gigabytes of the volumes on each pool (Cinder's volume service counts them)."""
    rows = session.exec(
        select(Volume.host, func.sum(Volume.size))
        .where(Volume.host.is_not(None))
        .group_by(Volume.host)
    ).all()
    return {host: float(total or 0) for host, total in rows}


def pools(session: Session, down_after: timedelta, filters: dict[str, str]) -> list[dict[str, Any]]:
    """The pools of the backends that are enabled and up, filtered, by name."""
    filters = dict(filters)
    name = filters.pop("name", None)
    type_ref = filters.pop("volume_type", None)
    extra_specs: dict[str, str] | None = None
    if type_ref is not None:
        volume_type = type_db.find(session, type_ref)
        if volume_type is None:
            raise volume_type_not_found(type_ref)
        extra_specs = volume_db.extra_specs(session, volume_type.id)
    cutoff = reports_since(down_after.total_seconds())
    services = session.exec(
        select(Service).where(
            Service.binary == VOLUME_BINARY,
            Service.disabled.is_(False),
            Service.updated_at >= cutoff,  # up (a backend_state down is listed: Cinder's)
        )
    ).all()
    alive = [s for s in services if s.capabilities]
    allocated = _allocated(session) if alive else {}
    found = []
    for service in alive:
        pool = pool_host(service)
        caps = capabilities(service, allocated.get(pool, 0.0))
        if name is not None and pool != name:
            continue
        if any(not _equal_after_convert(caps.get(k), v) for k, v in filters.items()):
            continue
        if extra_specs is not None and unmet(caps, extra_specs):
            continue
        found.append({"name": pool, "capabilities": caps})
    return sorted(found, key=lambda p: p["name"])


@router.route("GET", "/scheduler-stats/get_pools", response=PoolList)
async def get_pools(req: ApiRequest) -> Response:
    """The pools of the backends that are up; `detail=true` adds their capabilities."""
    policy.authorize(req.ctx, POLICY)
    detail = boolean_param(  # Cinder's get_bool_param('detail')
        req, "detail", refusal="Value '{raw}' for 'detail' is not a boolean."
    )
    filters = _filters(req)
    down_after = timedelta(seconds=req.services.settings.service_down_time)

    def run() -> list[dict[str, Any]]:
        with req.services.db.read() as session:
            return pools(session, down_after, filters)

    found = await run_in_threadpool(run)
    if not detail:
        found = [{"name": p["name"]} for p in found]
    return JSONResponse({"pools": found})
