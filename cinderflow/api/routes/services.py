"""`/os-services` (admin): every API, scheduler (control worker) and backend, with liveness from
its heartbeat and, from 3.49, each backend's own `backend_state`.

Enable/disable really flip the flag the scheduler reads (Cinder's only answer as if they did).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cinderflow.api import microversions as mv
from cinderflow.api import policy
from cinderflow.api.errors import NotFound, invalid_input
from cinderflow.api.routing import ApiRequest, Router
from cinderflow.api.validation import NOT_BLANK, NotNull, StrictModel
from cinderflow.api.views import timestamp
from cinderflow.db.models import Service, utcnow
from cinderflow.scheduling.backends import VOLUME_BINARY

router = Router()


def _reason(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("disabled_reason can not be empty")
    return value


def _needs_host_and_binary(schema: dict[str, Any], model: type) -> None:
    """The schema says what the handler checks: a host ("Host field is missing." otherwise,
    in Cinder's words) and a binary (or its old name)."""
    schema["required"] = sorted({*schema.get("required", []), "host"})
    schema["anyOf"] = [{"required": ["binary"]}, {"required": ["service"]}]


class ServiceRef(StrictModel):
    model_config = ConfigDict(json_schema_extra=_needs_host_and_binary)

    host: Annotated[str | SkipJsonSchema[None], NotNull, Field(min_length=1, max_length=255)] = None
    binary: Annotated[str | SkipJsonSchema[None], NotNull, Field(min_length=1, max_length=255)] = (
        None
    )
    service: Annotated[str | SkipJsonSchema[None], NotNull, Field(min_length=1, max_length=255)] = (
        None
    )
    """Deprecated alias of `binary`."""
    cluster: Annotated[str, Field(max_length=255)] | None = None

    @model_validator(mode="after")
    def _names_a_binary(self) -> ServiceRef:
        if not (self.binary or self.service):
            raise ValueError("'binary' is a required property")
        return self


class DisableWithReason(ServiceRef):
    disabled_reason: Annotated[
        str,
        Field(min_length=1, max_length=255, json_schema_extra=NOT_BLANK),
        AfterValidator(_reason),
    ]


class ServiceView(BaseModel):
    binary: str
    host: str
    zone: str
    status: str
    state: str
    updated_at: str | None
    disabled_reason: str | None
    cluster: str | None = Field(default=None, description="from 3.7")
    backend_state: str | None = Field(default=None, description="from 3.49, backends only")
    replication_status: str | None = None
    active_backend_id: str | None = None
    frozen: bool | None = None


class ServiceChange(BaseModel):
    """What enable/disable answer (Cinder's words: `status`, `disabled`, the reason)."""

    host: str
    service: str
    binary: str
    status: str
    disabled: bool
    disabled_reason: str | None = None


class ServiceList(BaseModel):
    services: list[ServiceView]


def service_view(req: ApiRequest, row: Service, down_after: timedelta) -> dict[str, Any]:
    alive = row.updated_at is not None and abs(utcnow() - row.updated_at) <= down_after
    view: dict[str, Any] = {
        "binary": row.binary,
        "host": row.host,
        "zone": row.availability_zone,
        "status": "disabled" if row.disabled else "enabled",
        "state": "up" if alive else "down",
        "updated_at": timestamp(row.updated_at),
        "disabled_reason": row.disabled_reason,
    }
    if req.at_least(mv.CLUSTER_SUPPORT):
        view["cluster"] = None
    if row.binary == VOLUME_BINARY:
        view.update(replication_status="disabled", active_backend_id=None, frozen=False)
        if req.at_least(mv.BACKEND_STATE_REPORT):
            view["backend_state"] = (row.capabilities or {}).get("backend_state", "up")
    return view


@router.route("GET", "/os-services", response=ServiceList)
async def index(req: ApiRequest) -> Response:
    """Services with `state` up/down from their heartbeat age (`service_down_time`)."""
    policy.authorize(req.ctx, "volume_extension:services:index")
    down_after = timedelta(seconds=req.services.settings.service_down_time)

    def run() -> list[dict[str, Any]]:
        with req.services.db.read() as session:
            stmt = select(Service).order_by(Service.binary, Service.host)
            for name in ("host", "binary"):
                if name in req.query:
                    stmt = stmt.where(getattr(Service, name) == req.query[name])
            return [service_view(req, row, down_after) for row in session.exec(stmt)]

    return JSONResponse({"services": await run_in_threadpool(run)})


def _service(session: Session, ref: ServiceRef) -> Service:
    if not ref.host:
        raise invalid_input("Host field is missing.")
    binary = ref.binary or ref.service
    row = session.exec(
        select(Service).where(Service.host == ref.host, Service.binary == binary).with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"Service {binary} could not be found on host {ref.host}.")
    return row


async def _set_disabled(req: ApiRequest, disabled: bool, reason: str | None) -> dict[str, Any]:
    policy.authorize(req.ctx, "volume_extension:services:update")
    ref = req.body
    assert isinstance(ref, ServiceRef)

    def run() -> None:
        with req.services.db.transaction() as session:
            row = _service(session, ref)
            row.disabled = disabled
            row.disabled_reason = reason

    await run_in_threadpool(run)
    return {
        "host": ref.host,
        "service": ref.service or "",
        "binary": ref.binary or ref.service,
        "status": "disabled" if disabled else "enabled",
        "disabled": disabled,
    }


@router.route("PUT", "/os-services/enable", body=ServiceRef, response=ServiceChange)
async def enable(req: ApiRequest) -> Response:
    """Let the scheduler use a service again (clears the disabled reason)."""
    return JSONResponse({**await _set_disabled(req, False, None), "disabled_reason": None})


@router.route("PUT", "/os-services/disable", body=ServiceRef, response=ServiceChange)
async def disable(req: ApiRequest) -> Response:
    """Keep the scheduler from placing new volumes on a service."""
    return JSONResponse(await _set_disabled(req, True, None))


@router.route(
    "PUT", "/os-services/disable-log-reason", body=DisableWithReason, response=ServiceChange
)
async def disable_log_reason(req: ApiRequest) -> Response:
    """Disable, saying why."""
    assert isinstance(req.body, DisableWithReason)
    reason = req.body.disabled_reason
    return JSONResponse({**await _set_disabled(req, True, reason), "disabled_reason": reason})
