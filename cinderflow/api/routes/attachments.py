"""`/attachments` (3.27+; os-complete 3.44; mode 3.54): the new attach API.

Reserve and complete are database changes. Connecting (a connector given) and disconnecting
run the ConnectAttachment/DisconnectAttachment workflows, which the request waits for, so the
answer carries the driver's connection info as Cinder's does.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select as sa_select
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response
from temporalio.client import WorkflowFailureError

from cinderflow.api import idempotency, policy
from cinderflow.api import microversions as mv
from cinderflow.api.context import RequestContext
from cinderflow.api.errors import (
    ApiError,
    BadRequest,
    Conflict,
    NotFound,
    ServiceUnavailable,
    invalid_volume,
)
from cinderflow.api.handover import hand_over, operation_policy
from cinderflow.api.lookups import visible_volume
from cinderflow.api.params import boolean_param
from cinderflow.api.routing import ApiRequest, Router
from cinderflow.api.validation import Connector, StrictModel
from cinderflow.api.views import timestamp
from cinderflow.db import attachments as attachment_db
from cinderflow.db.cas import compare_and_swap
from cinderflow.db.models import Attachment, OutboxEntry, Volume, utcnow
from cinderflow.status import AttachStatus, VolumeStatus
from cinderflow.temporal.outbox import TemporalUnavailable, operation_of
from cinderflow.workflows.attachments import AttachmentInput

router = Router()
UUID_PATTERN = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
Uuid = Annotated[str, Field(pattern=UUID_PATTERN)]
FILTERS = {
    "volume_id": "volume_id",
    "status": "attach_status",
    "attach_status": "attach_status",
    "instance_id": "instance_uuid",
}


class AttachmentCreate(StrictModel):
    volume_uuid: Uuid
    instance_uuid: Uuid | None = None
    connector: Connector | None = None
    mode: Literal["rw", "ro"] | None = None

    @field_validator("connector", mode="after")
    @classmethod
    def _empty_is_none(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return value or None  # cinderclient sends {} to only reserve


class AttachmentCreateBody(StrictModel):
    attachment: AttachmentCreate


class AttachmentUpdate(StrictModel):
    connector: Connector = Field(min_length=1)


class AttachmentUpdateBody(StrictModel):
    attachment: AttachmentUpdate


class CompleteBody(StrictModel):
    complete: Any = Field(alias="os-complete")


class AttachmentView(BaseModel):
    id: str
    status: str
    instance: str | None
    volume_id: str
    attached_at: str | None = None
    detached_at: str | None = None
    attach_mode: str | None = None
    connection_info: dict[str, Any] | None = None


class AttachmentBody(BaseModel):
    attachment: AttachmentView


class AttachmentList(BaseModel):
    attachments: list[AttachmentView]


def summary(attachment: Attachment) -> dict[str, Any]:
    return {
        "id": attachment.id,
        "status": attachment.attach_status,
        "instance": attachment.instance_uuid,
        "volume_id": attachment.volume_id,
    }


def detail(attachment: Attachment) -> dict[str, Any]:
    return {
        **summary(attachment),
        "attached_at": timestamp(attachment.attach_time) or "",
        "detached_at": timestamp(attachment.detach_time) or "",
        "attach_mode": attachment.attach_mode,
        "connection_info": attachment.connection_info or {},
    }


def attachment_not_found(attachment_id: str) -> NotFound:
    return NotFound(
        f"Volume attachment could not be found with filter: attachment_id = {attachment_id}."
    )


def visible_attachment(
    session: Session, ctx: RequestContext, attachment_id: str, *, for_update: bool = False
) -> Attachment:
    attachment = session.get(Attachment, attachment_id, with_for_update=for_update)
    if attachment is None or not policy.allowed(
        ctx, "volume:attachment_get", attachment.project_id
    ):
        raise attachment_not_found(attachment_id)
    return attachment


def _changeable(session: Session, attachment: Attachment) -> Volume:
    """The attachment's volume, locked; 409 while an operation owns the volume or the
    attachment (its workflow writes their statuses)."""
    volume = session.get(Volume, attachment.volume_id, with_for_update=True)
    assert volume is not None
    if attachment.workflow_id is not None:
        raise Conflict(
            f"Attachment {attachment.id} is busy: operation "
            f"{operation_of(attachment.workflow_id)} is running."
        )
    if volume.workflow_id is not None:
        raise Conflict(
            f"Volume {volume.id} is busy: status {volume.status}, operation "
            f"{operation_of(volume.workflow_id)} is running. Retry when it ends."
        )
    return volume


def _hand_over(req: ApiRequest, session: Session, operation: str, attachment: Attachment) -> Any:
    """Give the attachment to its connect or disconnect workflow (its row and changes are
    flushed first, then taken by compare-and-swap like any other row)."""
    session.add(attachment)
    session.flush()
    settings = req.services.settings
    payload = AttachmentInput(
        resource_id=attachment.id,
        policy=operation_policy(settings),
        request_id=req.ctx.request_id,
    )
    entry = hand_over(session, settings, operation, attachment, payload)
    assert entry is not None, "the attachment is locked and was checked"
    return entry


async def _run(req: ApiRequest, entry: OutboxEntry, failure: str) -> Any:
    """Start a connect/disconnect workflow and wait for it, within `attachment_timeout`."""
    try:
        return await req.services.outbox.start_and_wait(
            entry, req.services.settings.attachment_timeout
        )
    except TemporalUnavailable:
        raise ServiceUnavailable(
            "The volume service is unavailable; the request is recorded and will be carried "
            "out. Show the attachment to see when it is done."
        ) from None
    except TimeoutError:
        raise ServiceUnavailable(
            f"The volume backend did not answer within {req.services.settings.attachment_timeout}"
            " seconds; the request goes on. Show the attachment to see when it is done."
        ) from None
    except WorkflowFailureError as error:
        cause = getattr(error.cause, "message", None) or str(error.cause)
        raise ApiError(f"{failure} ({cause}).") from None


def _reread(req: ApiRequest, attachment_id: str) -> dict[str, Any]:
    with req.services.db.read() as session:
        return detail(visible_attachment(session, req.ctx, attachment_id))


# Create, update, complete ---------------------------------------------------------------------


@router.route(
    "POST", "/attachments", since=mv.NEW_ATTACH, body=AttachmentCreateBody, response=AttachmentBody
)
async def create(req: ApiRequest) -> Response:
    """Reserve a volume for a consumer; with a connector, also connect it."""
    assert isinstance(req.body, AttachmentCreateBody)
    spec = req.body.attachment
    if spec.mode is not None and not req.at_least(mv.ATTACHMENT_CREATE_MODE_ARG):
        raise BadRequest("Additional properties are not allowed ('mode' was unexpected)")

    def run() -> tuple[str, OutboxEntry | None]:
        with req.services.db.transaction() as session:
            attachment = _reserve(session, req.ctx, spec)
            idempotency.claim(session, attachment.id)
            entry = None
            if spec.connector:
                attachment.connector = spec.connector
                entry = _hand_over(req, session, "attach", attachment)
            session.add(attachment)
            session.flush()
            attachment_db.settle_volume(session, attachment.volume_id)
            return attachment.id, entry

    attachment_id, entry = await run_in_threadpool(run)
    if entry is not None:
        await _run(req, entry, "Unable to create attachment for volume")
    return JSONResponse({"attachment": await run_in_threadpool(_reread, req, attachment_id)})


def _reserve(session: Session, ctx: RequestContext, spec: AttachmentCreate) -> Attachment:
    volume = visible_volume(session, ctx, spec.volume_uuid, for_update=True)
    policy.authorize(ctx, "volume:attachment_create", volume.project_id)
    if "error" in volume.status:
        raise invalid_volume(
            "Volume attachments can not be created if the volume is in an error state. The "
            f"Volume {volume.id} currently has a status of: {volume.status} "
        )
    allowed = (
        (VolumeStatus.AVAILABLE, VolumeStatus.IN_USE, VolumeStatus.DOWNLOADING)
        if volume.multiattach
        else (VolumeStatus.AVAILABLE, VolumeStatus.DOWNLOADING)
    )
    reserved = compare_and_swap(
        session,
        Volume,
        volume.id,
        expected={"status": allowed, "workflow_id": None},
        values={"status": VolumeStatus.RESERVED},
    )
    if not reserved and not _same_instance(session, volume, spec.instance_uuid):
        raise invalid_volume(
            f"Volume {volume.id} status must be {' or '.join(allowed)} to reserve, but the "
            f"current status is {volume.status}."
        )
    return Attachment(
        id=str(uuid.uuid4()),
        volume_id=volume.id,
        project_id=volume.project_id,
        instance_uuid=spec.instance_uuid,
        attach_status=AttachStatus.RESERVED,
        attach_mode=spec.mode or "null",
    )


def _same_instance(session: Session, volume: Volume, instance_uuid: str | None) -> bool:
    """A second attachment for the same instance (live migration) needs no new reservation."""
    if instance_uuid is None or volume.status not in (VolumeStatus.IN_USE, VolumeStatus.RESERVED):
        return False
    return any(a.instance_uuid == instance_uuid for a in attachment_db.live(session, volume.id))


@router.route(
    "PUT",
    "/attachments/{attachment_id}",
    since=mv.NEW_ATTACH,
    body=AttachmentUpdateBody,
    response=AttachmentBody,
)
async def update(req: ApiRequest) -> Response:
    """Connect a reserved attachment to the consumer's connector; returns connection info."""
    assert isinstance(req.body, AttachmentUpdateBody)
    connector = req.body.attachment.connector
    attachment_id = req.path_params["attachment_id"]

    def run() -> OutboxEntry:
        with req.services.db.transaction() as session:
            attachment = visible_attachment(session, req.ctx, attachment_id, for_update=True)
            policy.authorize(req.ctx, "volume:attachment_update", attachment.project_id)
            volume = session.get(Volume, attachment.volume_id)
            assert volume is not None
            if "error" in volume.status:
                raise Conflict(
                    "Resource conflict: Volume attachments can not be updated if the volume is "
                    f"in an error state. The Volume {volume.id} currently has a status of: "
                    f"{volume.status} "
                )
            _changeable(session, attachment)
            others = [a for a in attachment_db.live(session, volume.id) if a.id != attachment.id]
            if not volume.multiattach and any(a.connection_info for a in others):
                raise Conflict(
                    f"Resource conflict: duplicate connectors detected on volume {volume.id}"
                )
            attachment.connector = connector
            if attachment.attach_mode in (None, "null"):
                attachment.attach_mode = connector.get("mode", "rw")
            return _hand_over(req, session, "attach", attachment)

    await _run(req, await run_in_threadpool(run), "Unable to update attachment")
    return JSONResponse({"attachment": await run_in_threadpool(_reread, req, attachment_id)})


@router.action(
    "/attachments/{attachment_id}/action",
    "os-complete",
    body=CompleteBody,
    since=mv.NEW_ATTACH_COMPLETION,
    status=204,
)
async def complete(req: ApiRequest) -> Response:
    """The consumer is using the volume: attachment `attached`, volume `in-use`."""
    attachment_id = req.path_params["attachment_id"]

    def run() -> None:
        with req.services.db.transaction() as session:
            attachment = visible_attachment(session, req.ctx, attachment_id, for_update=True)
            policy.authorize(req.ctx, "volume:attachment_complete", attachment.project_id)
            _changeable(session, attachment)
            attachment.attach_status = AttachStatus.ATTACHED
            attachment.attach_time = attachment.attach_time or utcnow()
            attachment.updated_at = utcnow()
            session.flush()
            attachment_db.settle_volume(session, attachment.volume_id)

    await run_in_threadpool(run)
    return Response(status_code=204)


# Delete ---------------------------------------------------------------------------------------


@router.route(
    "DELETE", "/attachments/{attachment_id}", since=mv.NEW_ATTACH, response=AttachmentList
)
async def delete(req: ApiRequest) -> Response:
    """Disconnect and forget an attachment; returns the volume's remaining attachments."""
    attachment_id = req.path_params["attachment_id"]

    def run() -> tuple[str, OutboxEntry | None]:
        with req.services.db.transaction() as session:
            attachment = visible_attachment(session, req.ctx, attachment_id, for_update=True)
            policy.authorize(req.ctx, "volume:attachment_delete", attachment.project_id)
            _changeable(session, attachment)
            if not attachment.connector:  # only reserved: nothing exported to undo
                session.delete(attachment)
                session.flush()
                attachment_db.settle_volume(session, attachment.volume_id)
                return attachment.volume_id, None
            attachment.attach_status = AttachStatus.DETACHING
            entry = _hand_over(req, session, "detach", attachment)
            attachment_db.settle_volume(session, attachment.volume_id)
            return attachment.volume_id, entry

    volume_id, entry = await run_in_threadpool(run)
    if entry is not None:
        await _run(req, entry, "Unable to delete the attachment")

    def remaining() -> list[dict[str, Any]]:
        with req.services.db.read() as session:
            return [summary(a) for a in attachment_db.live(session, volume_id)]

    return JSONResponse({"attachments": await run_in_threadpool(remaining)})


# Read -----------------------------------------------------------------------------------------


@router.route("GET", "/attachments", since=mv.NEW_ATTACH, response=AttachmentList)
async def index(req: ApiRequest) -> Response:
    """The caller's attachments (summary); filters volume_id, status, instance_id."""
    return await _list(req, detailed=False)


@router.route("GET", "/attachments/detail", since=mv.NEW_ATTACH, response=AttachmentList)
async def index_detail(req: ApiRequest) -> Response:
    """The caller's attachments with connection info."""
    return await _list(req, detailed=True)


async def _list(req: ApiRequest, *, detailed: bool) -> Response:
    policy.authorize(req.ctx, "volume:attachment_get_all", req.ctx.project_id)
    everyone = req.ctx.is_admin and boolean_param(req, "all_tenants")

    def run() -> list[dict[str, Any]]:
        with req.services.db.read() as session:
            stmt = sa_select(Attachment).order_by(Attachment.created_at, Attachment.id)
            if not everyone:
                stmt = stmt.where(Attachment.project_id == req.ctx.project_id)
            for param, column in FILTERS.items():
                if param in req.query:
                    stmt = stmt.where(getattr(Attachment, column) == req.query[param])
            rows = session.exec(stmt).scalars()
            return [detail(a) if detailed else summary(a) for a in rows]

    return JSONResponse({"attachments": await run_in_threadpool(run)})


@router.route("GET", "/attachments/{attachment_id}", since=mv.NEW_ATTACH, response=AttachmentBody)
async def show(req: ApiRequest) -> Response:
    """One attachment, with its connection info."""
    return JSONResponse(
        {"attachment": await run_in_threadpool(_reread, req, req.path_params["attachment_id"])}
    )
