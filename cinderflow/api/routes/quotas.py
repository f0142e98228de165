"""`/os-quota-sets` and `/limits`: limits, counted usage and reservations per project."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cinderflow import quota
from cinderflow.api import microversions as mv
from cinderflow.api import policy
from cinderflow.api.errors import BadRequest, invalid_input
from cinderflow.api.params import boolean_param
from cinderflow.api.routing import ApiRequest, Router
from cinderflow.api.schemas.quotas import LimitsResponse, QuotaSetBody, QuotaSetResponse
from cinderflow.db.models import Quota
from cinderflow.settings import Settings

router = Router()
BASE = "/os-quota-sets/{target}"
UNCHECKED = frozenset({quota.engine.PER_VOLUME})
"""Limits that are not compared with usage on update."""


def _quota_set(
    session: Session, settings: Settings, project_id: str, *, with_usage: bool
) -> dict[str, Any]:
    limits = quota.limits(session, settings, project_id)
    if not with_usage:
        return limits
    used, held = quota.usage(session, settings, project_id), quota.reserved(session, project_id)
    return {
        name: {
            "limit": limit,
            "in_use": used.get(name, 0),
            "reserved": held.get(name, 0),
            "allocated": 0,
        }
        for name, limit in limits.items()
    }


@router.route("GET", BASE, response=QuotaSetResponse)
async def show(req: ApiRequest) -> Response:
    """A project's limits; with `usage=true`, also in_use/reserved/allocated per resource."""
    target = req.path_params["target"]
    policy.authorize(req.ctx, "volume_extension:quotas:show", target)
    with_usage = boolean_param(req, "usage")

    def run() -> dict[str, Any]:
        with req.services.db.read() as session:
            return _quota_set(session, req.services.settings, target, with_usage=with_usage)

    return JSONResponse({"quota_set": {"id": target, **await run_in_threadpool(run)}})


@router.route("GET", BASE + "/defaults", response=QuotaSetResponse)
async def defaults(req: ApiRequest) -> Response:
    """The default limits."""
    target = req.path_params["target"]
    policy.authorize(req.ctx, "volume_extension:quotas:show", target)

    def run() -> dict[str, int]:
        with req.services.db.read() as session:
            return quota.engine.defaults(req.services.settings, quota.engine.type_names(session))

    return JSONResponse({"quota_set": {"id": target, **await run_in_threadpool(run)}})


@router.route("PUT", BASE, body=QuotaSetBody, response=QuotaSetResponse)
async def update(req: ApiRequest) -> Response:
    """Set limits; a limit below what is in use and reserved is refused."""
    assert isinstance(req.body, QuotaSetBody)
    target = req.path_params["target"]
    policy.authorize(req.ctx, "volume_extension:quotas:update", target)
    requested = req.body.quota_set

    def run() -> dict[str, int]:
        settings = req.services.settings
        with req.services.db.transaction() as session:
            quota.lock(session, target)
            current = quota.limits(session, settings, target)
            bad = sorted(k for k in requested if k not in current)
            if bad:
                raise invalid_input(f"Bad key(s) in quota set: {','.join(bad)}")
            _refuse_below_usage(session, settings, target, requested)
            for name, value in requested.items():
                session.merge(Quota(project_id=target, resource=name, hard_limit=value))
            session.flush()
            return quota.limits(session, settings, target)

    return JSONResponse({"quota_set": await run_in_threadpool(run)})


def _refuse_below_usage(
    session: Session, settings: Settings, project_id: str, requested: dict[str, Any]
) -> None:
    used, held = quota.usage(session, settings, project_id), quota.reserved(session, project_id)
    for name, limit in requested.items():
        consumed = used.get(name, 0) + held.get(name, 0)
        if name not in UNCHECKED and limit != -1 and limit < consumed:
            raise BadRequest(
                f"Quota {name} limit must be equal or greater than existing resources. "
                f"Current usage is {consumed} and the requested limit is {limit}."
            )


@router.route("DELETE", BASE)
async def reset(req: ApiRequest) -> Response:
    """Forget a project's own limits: the defaults apply again."""
    target = req.path_params["target"]
    policy.authorize(req.ctx, "volume_extension:quotas:delete", target)

    def run() -> None:
        with req.services.db.transaction() as session:
            session.exec(delete(Quota).where(Quota.project_id == target))

    await run_in_threadpool(run)
    return Response(status_code=200)


@router.route("GET", "/limits", response=LimitsResponse)
async def limits(req: ApiRequest) -> Response:
    """Absolute limits and usage of the caller's project (admins: any, from 3.39)."""
    project = req.ctx.project_id
    asked = req.query.get("project_id") or req.query.get("tenant_id")
    if asked and req.at_least(mv.LIMITS_ADMIN_FILTER) and req.ctx.is_admin:
        project = asked
    policy.authorize(req.ctx, "limits_extension:used_limits", project)

    def run() -> tuple[dict[str, int], dict[str, int]]:
        settings = req.services.settings
        with req.services.db.read() as session:
            return quota.limits(session, settings, project), quota.usage(session, settings, project)

    limit, used = await run_in_threadpool(run)
    absolute = {
        "maxTotalVolumes": limit["volumes"],
        "maxTotalSnapshots": limit["snapshots"],
        "maxTotalVolumeGigabytes": limit["gigabytes"],
        "maxTotalBackups": limit["backups"],
        "maxTotalBackupGigabytes": limit["backup_gigabytes"],
        "totalVolumesUsed": used.get("volumes", 0),
        "totalGigabytesUsed": used.get("gigabytes", 0),
        "totalSnapshotsUsed": used.get("snapshots", 0),
        "totalBackupsUsed": 0,
        "totalBackupGigabytesUsed": 0,
    }
    return JSONResponse({"limits": {"rate": [], "absolute": absolute}})
