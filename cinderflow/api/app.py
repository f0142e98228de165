"""The ASGI application: `create_app(settings)`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.client import Client
from temporalio.service import RPCError

from cinderflow import heartbeat, metrics
from cinderflow.api import openapi, versions
from cinderflow.api.errors import (
    NOT_FOUND,
    ApiError,
    Conflict,
    OverLimit,
    ServiceUnavailable,
    fault_body,
)
from cinderflow.api.keystone import KeystoneAuth
from cinderflow.api.middleware import CinderMiddleware
from cinderflow.api.observability import RequestLog
from cinderflow.api.policy import Policy
from cinderflow.api.routes import (
    attachments,
    extensions,
    images,
    messages,
    operations,
    quotas,
    reset_status,
    retype,
    scheduler_stats,
    services,
    snapshots,
    transfers,
    type_encryption,
    type_extra_specs,
    types,
    volume_actions,
    volumes,
)
from cinderflow.api.routing import Router
from cinderflow.db.engine import Database
from cinderflow.failpoints import Failpoints
from cinderflow.quota import QuotaExceeded
from cinderflow.settings import Settings
from cinderflow.temporal.client import connect
from cinderflow.temporal.outbox import Outbox, TemporalUnavailable
from cinderflow.temporal.owner import OwnerClient, OwnerGone, UpdateRefused

HTTP_MESSAGES = {404: NOT_FOUND, 405: "The method is not allowed for the requested URL."}


@dataclass
class ApiServices:
    """Process-wide dependencies of the handlers."""

    settings: Settings
    db: Database
    outbox: Outbox
    failpoints: Failpoints
    temporal: Client
    owners: OwnerClient
    """Updates and queries to the workflow that owns a resource."""


def api_router() -> Router:
    router = Router()
    for module in (
        volumes,
        quotas,
        types,
        type_extra_specs,
        type_encryption,
        messages,
        services,
        scheduler_stats,
        snapshots,
        attachments,
        volume_actions,
        retype,
        images,
        transfers,
        reset_status,
        operations,
        extensions,
    ):
        router.include(module.router)
    return router


def create_app(
    settings: Settings, *, db: Database | None = None, client: Client | None = None
) -> Starlette:
    """The API; `db`/`client` may be injected (tests, `cinderflow dev`), else built here.

    The Temporal client connects lazily: the API serves (and records operations in the outbox)
    even while Temporal is unreachable.
    """
    router = api_router()
    document = openapi.build(router)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        database = db or Database(settings.db_url)
        temporal = client or await connect(settings, lazy=True)
        app.state.services = ApiServices(
            settings,
            database,
            Outbox(database, temporal),
            Failpoints(settings.failpoint_dir),
            temporal,
            OwnerClient(temporal),
        )
        app.state.metrics = metrics.database_registry(database, settings)
        app.state.idempotency_secret = None  # loaded when a key is first used
        alive = asyncio.create_task(
            heartbeat.beat(
                database,
                host=settings.host,
                binary="cinder-api",
                zone=settings.storage_availability_zone,
                interval=settings.stats_interval,
            )
        )
        try:
            yield
        finally:
            alive.cancel()
            if db is None:
                database.dispose()

    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(document)

    async def metrics_endpoint(request: Request) -> Response:
        """Prometheus metrics (no auth, as is usual for a scrape endpoint: counts and
        states, no project or resource ids)."""
        gauges = request.app.state.metrics
        body = await run_in_threadpool(metrics.exposition, gauges)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    policy = Policy(settings.policy_file)
    keystone = KeystoneAuth(settings, policy) if settings.auth_strategy == "keystone" else None
    app = Starlette(
        routes=[
            Route("/", versions.root),
            Route("/v3", versions.v3),
            Route("/v3/", versions.v3),
            Route("/openapi.json", openapi_json),
            Route("/metrics", metrics_endpoint),
            *router.starlette_routes(),
        ],
        middleware=[
            Middleware(RequestLog),
            Middleware(CinderMiddleware, settings=settings, policy=policy, keystone=keystone),
        ],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            QuotaExceeded: _over_quota,
            TemporalUnavailable: _temporal_unavailable,
            RPCError: _temporal_unavailable,
            OwnerGone: _owner_conflict,
            UpdateRefused: _owner_conflict,
        },
        lifespan=lifespan,
    )
    app.state.router = router
    return app


async def _api_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return JSONResponse(error.body(), status_code=error.code, headers=error.headers)


async def _over_quota(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, QuotaExceeded)
    return await _api_error(request, OverLimit(error.message, kind=error.kind))


async def _temporal_unavailable(request: Request, error: Exception) -> JSONResponse:
    """Temporal unreachable (or no worker answering): the client may retry; never a 500."""
    message = getattr(error, "message", None) or str(error)
    return await _api_error(
        request, ServiceUnavailable(f"The workflow service is unavailable now: {message}")
    )


async def _owner_conflict(request: Request, error: Exception) -> JSONResponse:
    """The resource's operation refused or ended while we talked to it: a lost race."""
    return await _api_error(request, Conflict(f"The operation in progress refused: {error}"))


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    message = HTTP_MESSAGES.get(error.status_code, error.detail)
    return JSONResponse(
        fault_body(error.status_code, message),
        status_code=error.status_code,
        headers=dict(error.headers or {}),
    )
