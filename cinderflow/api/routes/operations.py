"""`/operations`: cinderflow's extension showing what runs on a project's resources, how far
it is, how it ended, and stopping it where it can stop cleanly.

Cinder's only channel is `/messages` (failures, 30 days); cinder-csi polls a volume's status
in a loop. Here every operation the API accepted is a record (db/operation_records.py: written
with the hand-over, ended by the final write), so listing, filtering and paging are one indexed
query, and a just-accepted operation is listed before its workflow has even started. A running
operation's phase and percent come from its workflow's `progress` query, asked only while the
workflow is open (`QueryRejectCondition.NOT_OPEN`: a closed one is never replayed), so no row
costs a history scan. Records stay `operation_retention` seconds after they end.

`GET /operations/{id}?wait=N` waits up to N seconds for the operation to end (Google
Compute's `operations.wait`). `POST /operations/{id}/action {"cancel": null}` is a thin call
into the workflow's `cancel` update (workflows/operation.py), which refuses (409) where the
operation cannot stop cleanly.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, or_
from sqlmodel import select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cinderflow.api import policy
from cinderflow.api.errors import BadRequest, Conflict, NotFound
from cinderflow.api.params import boolean_param, int_param
from cinderflow.api.routing import ApiRequest, Router
from cinderflow.api.views import timestamp
from cinderflow.db import operation_records as records
from cinderflow.db.models import OperationRecord
from cinderflow.payloads import CancelRequest, OperationProgress
from cinderflow.status import OperationStatus
from cinderflow.temporal.outbox import TemporalUnavailable
from cinderflow.temporal.owner import OwnerClient, OwnerGone, UpdateRefused
from cinderflow.workflows.operation import CANCEL_UPDATE

router = Router()
HOST = re.compile(r"`[^`\s]+@[^`\s]+`|[^`\s()]+@[^`\s()#]+#[^`\s()]+")
"""`host@backend#pool` in a phase: hosts are shown to admins only (as Cinder's
os-vol-host-attr)."""
FAILED_FOR_MEMBERS = "The operation failed; see the resource's user messages."
FILTERS = frozenset({"resource_id", "operation", "status", "since"})
CONTROLS = frozenset({"limit", "marker", "all_tenants"})
DEFAULT_LIMIT = 100
MAX_WAIT_S = 120
QUERY_TIMEOUT_S = 2.0
PAGE_DEADLINE_S = 3.0
QUERIES_AT_ONCE = 16
"""Progress queries one page asks at once (a page of running operations is at most
osapi_max_limit of them)."""
WAIT_POLL_S = 0.5


class OperationView(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    operation: str
    resource_type: str
    resource_id: str
    volume_id: str | None
    project_id: str
    status: str
    phase: str | None
    progress: int | None
    started_at: str | None
    updated_at: str | None
    finished_at: str | None
    error: str | None
    summary: str
    request_id: str | None
    user_id: str | None
    cancellable: bool
    links: list[dict[str, str]]


class OperationBody(BaseModel):
    operation: OperationView


class OperationList(BaseModel):
    operations: list[OperationView]
    operations_links: list[dict[str, str]] | None = None


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cancel: None


@dataclass
class Live:
    """What Temporal says of an operation whose record has not ended."""

    status: str = OperationStatus.RUNNING
    progress: OperationProgress | None = None
    detail: str | None = None


async def live(owners: OwnerClient, workflow_id: str) -> Live:
    """The running operation's progress (its query, only while the workflow is open)."""
    try:
        progress = await owners.query(
            workflow_id,
            "progress",
            result_type=OperationProgress,
            open_only=True,
            timeout=QUERY_TIMEOUT_S,
        )
    except OwnerGone as gone:
        if gone.closed_as is None:  # Temporal does not know it: recorded, not started yet
            return Live(progress=OperationProgress(operation="", phase="waiting to start"))
        status, detail = records.CLOSED_WITHOUT_END.get(
            gone.closed_as, (OperationStatus.FAILED, "its workflow ended")
        )
        return Live(status, detail=detail)  # closed without ending its record
    except (UpdateRefused, TemporalUnavailable):  # no worker answered, or Temporal is away
        return Live()
    return Live(progress=progress)


def _visible_to(req: ApiRequest, row: OperationRecord) -> bool:
    return req.ctx.is_admin or req.ctx.project_id in (row.project_id, row.caller_project_id)


def _target(req: ApiRequest, row: OperationRecord) -> str:
    """The project the policy checks the caller against: the one it sees the row through."""
    if req.ctx.project_id in (row.project_id, row.caller_project_id):
        return req.ctx.project_id
    return row.project_id


def _authorized(req: ApiRequest, operation_id: str, rule: str) -> OperationRecord:
    """The operation, if the caller may see it (else 404) and `rule` allows (else 403)."""
    with req.services.db.read() as session:
        row = session.get(OperationRecord, operation_id)
    if row is None or not _visible_to(req, row):
        raise NotFound(f"Operation {operation_id} could not be found.")
    policy.authorize(req.ctx, rule, _target(req, row))
    return row


def view(req: ApiRequest, row: OperationRecord, state: Live | None) -> dict[str, Any]:
    """An operation as the API shows it: the record, with the workflow's live state while it
    runs; admins also get the workflow id and a link to it in the Temporal UI."""
    progress = state.progress if state else None
    status = row.status or (state.status if state else OperationStatus.RUNNING)
    error = None
    if row.status in (OperationStatus.FAILED, OperationStatus.RESET):
        # admins get the operation's own account; members Cinder's user message (the
        # account names backends and driver errors, which Cinder shows admins only)
        error = row.detail if req.ctx.is_admin else (row.user_message or FAILED_FOR_MEMBERS)
    if row.status is None and state is not None and state.detail:
        error = state.detail  # closed without its final write: what Temporal says
    phase = (progress.phase or None) if progress else None
    summary = row.summary
    if not req.ctx.is_admin:  # `host@backend#pool` in a phase, a migration's summary
        phase = HOST.sub("[backend]", phase) if phase else phase
        summary = HOST.sub("[backend]", summary)
    body: dict[str, Any] = {
        "id": row.id,
        "operation": row.operation,
        "resource_type": row.resource_type,
        "resource_id": row.resource_id,
        "volume_id": row.volume_id,
        "project_id": row.project_id,
        "status": status,
        "phase": phase,
        "progress": progress.percent if progress else None,
        "started_at": timestamp(row.created_at),
        "updated_at": timestamp(
            (progress.updated_at if progress and progress.updated_at else None)
            or row.finished_at
            or row.created_at
        ),
        "finished_at": timestamp(row.finished_at),
        "error": error,
        "summary": summary,
        "request_id": row.request_id,
        "user_id": row.user_id,
        "cancellable": status == OperationStatus.RUNNING
        and bool(progress and progress.cancellable),
        "links": req.link("operations", row.id),
    }
    if req.ctx.is_admin:
        body["workflow_id"] = row.workflow_id
        ui = req.services.settings.temporal_ui_url
        if ui:
            namespace = req.services.settings.temporal_namespace or "default"
            body["temporal_ui"] = (
                f"{ui.rstrip('/')}/namespaces/{namespace}/workflows/{row.workflow_id}"
            )
    return body


async def render(req: ApiRequest, rows: list[OperationRecord]) -> list[dict[str, Any]]:
    owners = req.services.owners
    running = [row for row in rows if row.status is None]
    gate = asyncio.Semaphore(QUERIES_AT_ONCE)

    async def ask(workflow_id: str) -> Live:
        async with gate:
            return await live(owners, workflow_id)

    asks = {row.id: asyncio.ensure_future(ask(row.workflow_id)) for row in running}
    if asks:
        # one deadline for the page: with no worker answering, a page of a thousand running
        # operations must not take a thousand query timeouts
        _, late = await asyncio.wait(asks.values(), timeout=PAGE_DEADLINE_S)
        for task in late:
            task.cancel()
    by_id = {
        ident: task.result() if task.done() and not task.cancelled() else Live()
        for ident, task in asks.items()
    }
    return [view(req, row, by_id.get(row.id)) for row in rows]


def _since(raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        # stored times are UTC (SQLite keeps them without an offset): compare in UTC
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadRequest(f"Invalid since '{raw}': expected an ISO 8601 time.") from None


@router.route("GET", "/operations", response=OperationList)
async def index(req: ApiRequest) -> Response:
    """The project's operations, newest first (admins: `all_tenants=1` for every project's);
    filters `resource_id`, `operation`, `status`, `since`; paging with `limit` and `marker`."""
    policy.authorize(req.ctx, "operation:get_all", req.ctx.project_id)
    unknown = sorted(set(req.query) - FILTERS - CONTROLS)
    if unknown:
        raise BadRequest(f"Invalid filters {','.join(unknown)} are found in query options.")
    status = req.query.get("status")
    if status is not None and status not in tuple(OperationStatus):
        raise BadRequest(f"Invalid status '{status}': one of {', '.join(tuple(OperationStatus))}.")
    since = _since(req.query["since"]) if "since" in req.query else None
    everyone = req.ctx.is_admin and boolean_param(req, "all_tenants")
    limit = min(int_param(req, "limit") or DEFAULT_LIMIT, req.services.settings.osapi_max_limit)
    marker = req.query.get("marker")

    def run() -> list[OperationRecord]:
        with req.services.db.read() as session:
            stmt = select(OperationRecord)
            if not everyone:
                project = req.ctx.project_id
                stmt = stmt.where(
                    or_(
                        OperationRecord.project_id == project,
                        OperationRecord.caller_project_id == project,
                    )
                )
            if "resource_id" in req.query:
                wanted = req.query["resource_id"]
                stmt = stmt.where(
                    or_(OperationRecord.resource_id == wanted, OperationRecord.volume_id == wanted)
                )
            if "operation" in req.query:
                stmt = stmt.where(OperationRecord.operation == req.query["operation"])
            if status == OperationStatus.RUNNING:
                stmt = stmt.where(OperationRecord.status.is_(None))
            elif status is not None:
                stmt = stmt.where(OperationRecord.status == status)
            if since is not None:
                stmt = stmt.where(OperationRecord.created_at >= since)
            if marker:
                after = session.get(OperationRecord, marker)
                if after is None or not (everyone or _visible_to(req, after)):
                    raise NotFound(f"Marker {marker} could not be found.")
                stmt = stmt.where(
                    or_(
                        OperationRecord.created_at < after.created_at,
                        and_(
                            OperationRecord.created_at == after.created_at,
                            OperationRecord.id < after.id,
                        ),
                    )
                )
            stmt = stmt.order_by(OperationRecord.created_at.desc(), OperationRecord.id.desc())
            return list(session.exec(stmt.limit(limit + 1)))

    rows = await run_in_threadpool(run)
    body: dict[str, Any] = {"operations": await render(req, rows[:limit])}
    if len(rows) > limit:
        query = {k: v for k, v in req.query.items() if k != "marker"}
        query["marker"] = rows[limit - 1].id
        tail = urlencode(query)
        project = req.ctx.project_id
        body["operations_links"] = [
            {"rel": "next", "href": f"{req.base_url}/v3/{project}/operations?{tail}"}
        ]
    return JSONResponse(body)


@router.route("GET", "/operations/{operation_id}", response=OperationBody)
async def show(req: ApiRequest) -> Response:
    """One operation; `wait=N` (seconds, at most 120) answers once it has ended, or after N
    seconds with it still running."""
    wait = int_param(req, "wait") or 0
    if wait > MAX_WAIT_S:
        raise BadRequest(f"wait must be at most {MAX_WAIT_S} seconds")
    unknown = sorted(set(req.query) - {"wait"})
    if unknown:
        raise BadRequest(f"Invalid filters {','.join(unknown)} are found in query options.")
    operation_id = req.path_params["operation_id"]
    deadline = time.monotonic() + wait
    while True:
        row = await run_in_threadpool(_authorized, req, operation_id, "operation:get")
        (shown,) = await render(req, [row])
        if shown["status"] != OperationStatus.RUNNING or time.monotonic() >= deadline:
            return JSONResponse({"operation": shown})
        await asyncio.sleep(min(WAIT_POLL_S, max(deadline - time.monotonic(), 0.0)))


@router.action("/operations/{operation_id}/action", "cancel", body=CancelBody, status=202)
async def cancel(req: ApiRequest) -> Response:
    """Stop a running operation where it can stop cleanly (a copy, an image download or
    upload, an extend waiting for its compute): what it made is undone, quota released, and
    the resource returns to its previous status. 409 where it cannot stop now."""
    operation_id = req.path_params["operation_id"]
    row = await run_in_threadpool(_authorized, req, operation_id, "operation:cancel")
    if row.status is not None:
        raise Conflict(f"Operation {operation_id} has ended ({row.status}); nothing to cancel.")
    try:
        await req.services.owners.update(
            row.workflow_id,
            CANCEL_UPDATE,
            CancelRequest(user_id=req.ctx.user_id, request_id=req.ctx.request_id),
            wait=10.0,
        )
    except OwnerGone:
        raise Conflict(
            f"Operation {operation_id} has not started yet or has just ended; show it and "
            "cancel again while it runs."
        ) from None
    except UpdateRefused as refused:
        raise Conflict(f"Operation {operation_id} cannot be cancelled: {refused}") from None
    return Response(status_code=202)
