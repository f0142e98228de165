"""`/messages` (3.3+): user messages about asynchronous failures.

Unlike Cinder, whose list is not scoped by project (a bug), everyone lists only their own
project's messages; admins add `all_tenants=1` to see all.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, or_
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cinderflow.api import microversions as mv
from cinderflow.api import policy
from cinderflow.api.context import RequestContext
from cinderflow.api.errors import BadRequest, NotFound
from cinderflow.api.params import boolean_param, int_param, sort_param
from cinderflow.api.routing import ApiRequest, Router
from cinderflow.api.views import timestamp
from cinderflow.db.models import Message, utcnow
from cinderflow.user_messages import user_message

router = Router()
FILTERS = ("resource_uuid", "resource_type", "event_id", "request_id", "message_level")
CONTROLS = frozenset({"limit", "marker", "offset", "sort", "sort_key", "sort_dir", "all_tenants"})
SORT_KEYS = frozenset({"created_at", "id", "event_id", "resource_type", "message_level"})


class MessageView(BaseModel):
    id: str
    event_id: str
    user_message: str
    message_level: str
    created_at: str
    guaranteed_until: str
    request_id: str | None
    links: list[dict[str, str]]
    resource_type: str | None = None
    resource_uuid: str | None = None


class MessageBody(BaseModel):
    message: MessageView


class MessageList(BaseModel):
    messages: list[MessageView]


def message_view(req: ApiRequest, row: Message) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": row.id,
        "event_id": row.event_id,
        "user_message": user_message(row.action_id, row.detail_id),
        "message_level": row.message_level,
        "created_at": timestamp(row.created_at),
        "guaranteed_until": timestamp(row.expires_at),
        "request_id": row.request_id,
        "links": req.link("messages", row.id),
    }
    if row.resource_type:
        view["resource_type"] = row.resource_type
    if row.resource_uuid:
        view["resource_uuid"] = row.resource_uuid
    return view


def _visible(session: Session, req: ApiRequest, message_id: str) -> Message:
    row = session.get(Message, message_id)
    if (
        row is None
        or row.expires_at < utcnow()
        or not (req.ctx.is_admin or row.project_id == req.ctx.project_id)
    ):
        raise NotFound(f"Message {message_id} could not be found.")
    return row


@router.route("GET", "/messages", since=mv.MESSAGES, response=MessageList)
async def index(req: ApiRequest) -> Response:
    """The project's unexpired messages, newest first; filters and paging from 3.5."""
    policy.authorize(req.ctx, "message:get_all", req.ctx.project_id)
    paged = req.at_least(mv.MESSAGES_PAGINATION)
    unknown = sorted(set(req.query) - set(FILTERS) - CONTROLS)
    if paged and unknown and not req.ctx.is_admin:
        raise BadRequest(f"Invalid filters {','.join(unknown)} are found in query options.")
    everyone = req.ctx.is_admin and boolean_param(req, "all_tenants")
    limit = int_param(req, "limit") if paged else None
    offset = (int_param(req, "offset") or 0) if paged else 0
    marker = req.query.get("marker") if paged else None
    order = sort_param(req, SORT_KEYS) if paged else [("created_at", "desc")]
    if not any(key == "id" for key, _ in order):
        order.append(("id", order[0][1]))

    def run() -> list[dict[str, Any]]:
        with req.services.db.read() as session:
            stmt = select(Message).where(Message.expires_at >= utcnow())
            if not everyone:
                stmt = stmt.where(Message.project_id == req.ctx.project_id)
            for name in FILTERS if paged else ():
                if name in req.query:
                    stmt = stmt.where(getattr(Message, name) == req.query[name])
            if marker:
                stmt = stmt.where(_after(session, marker, order, None if everyone else req.ctx))
            columns = [getattr(Message, k) for k, _ in order]
            stmt = stmt.order_by(
                *(
                    c.desc() if d == "desc" else c.asc()
                    for c, (_, d) in zip(columns, order, strict=True)
                )
            )
            stmt = stmt.offset(offset)
            if limit is not None:
                stmt = stmt.limit(limit)
            return [message_view(req, row) for row in session.exec(stmt)]

    return JSONResponse({"messages": await run_in_threadpool(run)})


def _after(
    session: Session, marker: str, order: list[tuple[str, str]], caller: RequestContext | None
):
    """Rows after the marker; a marker the `caller` could not list (another project's
    message) is as unknown as one that does not exist."""
    row = session.get(Message, marker)
    if row is None or (caller is not None and row.project_id != caller.project_id):
        raise NotFound(f"Marker {marker} could not be found.")
    clauses = []
    for i, (key, direction) in enumerate(order):
        column, value = getattr(Message, key), getattr(row, key)
        beyond = column > value if direction == "asc" else column < value
        clauses.append(
            and_(*(getattr(Message, k) == getattr(row, k) for k, _ in order[:i]), beyond)
        )
    return or_(*clauses)


@router.route("GET", "/messages/{message_id}", since=mv.MESSAGES, response=MessageBody)
async def show(req: ApiRequest) -> Response:
    """One message."""

    def run() -> dict[str, Any]:
        with req.services.db.read() as session:
            row = _visible(session, req, req.path_params["message_id"])
            policy.authorize(req.ctx, "message:get", row.project_id)
            return message_view(req, row)

    return JSONResponse({"message": await run_in_threadpool(run)})


@router.route("DELETE", "/messages/{message_id}", since=mv.MESSAGES, status=204)
async def delete(req: ApiRequest) -> Response:
    """Delete a message (204)."""

    def run() -> None:
        with req.services.db.transaction() as session:
            row = _visible(session, req, req.path_params["message_id"])
            policy.authorize(req.ctx, "message:delete", row.project_id)
            session.delete(row)

    await run_in_threadpool(run)
    return Response(status_code=204)
