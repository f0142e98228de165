"""Volume transfers, both route families (contract §3.5): legacy `/os-volume-transfer` (never
`no_snapshots`) and `/volume-transfers`; links always name `os-volume-transfer`.

Create and delete are compare-and-swaps of the volume (`available <-> awaiting-transfer`) in
the transaction that writes the transfer. Accept checks the auth key (a salted HMAC, compared
in constant time, transfer_keys.py), reserves the receiving project's quota keyed by the volume
and hands the volume to the AcceptTransfer workflow, which moves it in its final write.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select as sa_select
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cinderflow import quota, transfer_keys
from cinderflow.api import idempotency, policy
from cinderflow.api import microversions as mv
from cinderflow.api.errors import BadRequest, Conflict, NotFound, OverLimit, invalid_volume
from cinderflow.api.handover import Read, hand_over, operation_policy
from cinderflow.api.lookups import visible_volume
from cinderflow.api.params import boolean_param, int_param, sort_param
from cinderflow.api.routing import ApiRequest, Router
from cinderflow.api.schemas.volumes import Link
from cinderflow.api.validation import Boolean, StrictModel
from cinderflow.api.views import timestamp
from cinderflow.db import ownership, paging
from cinderflow.db import transfers as transfer_db
from cinderflow.db.cas import compare_and_swap
from cinderflow.db.models import OutboxEntry, Snapshot, Transfer, Volume, VolumeType, utcnow
from cinderflow.status import ResourceKind, SnapshotStatus, VolumeStatus
from cinderflow.temporal.outbox import operation_of
from cinderflow.workflows.accept_transfer import AcceptTransferInput

router = Router()
LINKS = "os-volume-transfer"
FAMILIES = ("/os-volume-transfer", "/volume-transfers")
SORT_KEYS = frozenset({"id", "name", "created_at", "volume_id"})


class LegacyTransferCreate(StrictModel):
    """The legacy family's offer (Cinder's v2 controller): no `no_snapshots`."""

    volume_id: str = Field(min_length=1, max_length=36)
    name: str | None = Field(default=None, max_length=255)


class TransferCreate(LegacyTransferCreate):
    no_snapshots: Boolean = False
    """From 3.55; true or false, never null."""


class LegacyTransferCreateBody(StrictModel):
    transfer: LegacyTransferCreate


class TransferCreateBody(StrictModel):
    transfer: TransferCreate


class AuthKey(StrictModel):
    auth_key: str | int


class AcceptBody(StrictModel):
    accept: AuthKey


def transfer_not_found(transfer_id: str) -> NotFound:
    return NotFound(f"Transfer {transfer_id} could not be found.")


# Views -------------------------------------------------------------------------------------


class TransferView(BaseModel):
    """A transfer as listed (summary) or shown (detail: the rest, by microversion)."""

    id: str
    volume_id: str
    name: str | None
    links: list[Link]
    created_at: str | None = None
    no_snapshots: bool | None = Field(default=None, description="from 3.55")
    source_project_id: str | None = Field(default=None, description="from 3.57")
    destination_project_id: str | None = Field(default=None, description="from 3.57")
    accepted: bool | None = Field(default=None, description="from 3.57")
    auth_key: str | None = Field(default=None, description="in the create response only")


class TransferBody(BaseModel):
    transfer: TransferView


class TransferList(BaseModel):
    transfers: list[TransferView]


def summary(req: ApiRequest, transfer: Transfer) -> dict[str, Any]:
    return {
        "id": transfer.id,
        "volume_id": transfer.volume_id,
        "name": transfer.name,
        "links": req.link(LINKS, transfer.id),
    }


def detail(req: ApiRequest, transfer: Transfer) -> dict[str, Any]:
    body = {**summary(req, transfer), "created_at": timestamp(transfer.created_at)}
    if req.at_least(mv.TRANSFER_WITH_SNAPSHOTS):
        body["no_snapshots"] = transfer.no_snapshots
    if req.at_least(mv.TRANSFER_WITH_HISTORY):
        body["source_project_id"] = transfer.source_project_id
        body["destination_project_id"] = transfer.destination_project_id
        body["accepted"] = transfer.accepted
    return body


def visible_transfer(
    session: Session, req: ApiRequest, transfer_id: str, *, for_update: bool = False
) -> Transfer:
    """A live transfer of a volume of the caller's project (any, for admins)."""
    transfer = session.get(Transfer, transfer_id, with_for_update=for_update)
    if (
        transfer is None
        or transfer.deleted
        or not (req.ctx.is_admin or transfer.source_project_id == req.ctx.project_id)
    ):
        raise transfer_not_found(transfer_id)
    return transfer


# Create ------------------------------------------------------------------------------------


async def create(req: ApiRequest) -> Response:
    """Offer a volume to another project: 202 with the auth key, shown this once."""
    assert isinstance(req.body, TransferCreateBody | LegacyTransferCreateBody)
    spec = req.body.transfer
    given = "no_snapshots" in spec.model_fields_set
    if given and not req.at_least(mv.TRANSFER_WITH_SNAPSHOTS):
        raise BadRequest(
            "Invalid input for field/attribute transfer. Value: "
            "Additional properties are not allowed ('no_snapshots' was unexpected)."
        )
    no_snapshots = isinstance(spec, TransferCreate) and spec.no_snapshots
    key = transfer_keys.new_key()

    def run() -> dict[str, Any]:
        with req.services.db.transaction() as session:
            volume = visible_volume(session, req.ctx, spec.volume_id, for_update=True)
            policy.authorize(req.ctx, "volume:create_transfer", volume.project_id)
            _check_offer(req, session, volume, no_snapshots)
            if not compare_and_swap(
                session,
                Volume,
                volume.id,
                expected={"status": VolumeStatus.AVAILABLE, "workflow_id": None},
                values={"status": VolumeStatus.AWAITING_TRANSFER},
            ):
                raise invalid_volume("status must be available")
            transfer_db.retire(
                session, volume.id
            )  # an offer left by a reset out of awaiting-transfer
            transfer = Transfer(
                id=str(uuid.uuid4()),
                volume_id=volume.id,
                name=spec.name.strip() if spec.name else spec.name,
                salt=key.salt,
                crypt_hash=key.crypt_hash,
                no_snapshots=no_snapshots,
                source_project_id=volume.project_id,
            )
            session.add(transfer)
            idempotency.claim(session, transfer.id)
            session.flush()
            return {**detail(req, transfer), "auth_key": key.auth_key}

    return JSONResponse({"transfer": await run_in_threadpool(run)}, status_code=202)


def _check_offer(req: ApiRequest, session: Session, volume: Volume, no_snapshots: bool) -> None:
    """Cinder's checks of `transfer.API.create`, in its order and words."""
    if volume.workflow_id is not None or ownership.holds_on(session, volume.id):
        raise Conflict(f"Volume {volume.id} is busy: an operation uses it; retry when it ends.")
    if volume.status != VolumeStatus.AVAILABLE:
        raise invalid_volume("status must be available")
    if volume.encryption_key_id is not None:
        if not req.at_least(mv.TRANSFER_ENCRYPTED_VOLUME):
            raise invalid_volume("transferring encrypted volume is not supported")
        if no_snapshots:
            raise invalid_volume(
                "transferring an encrypted volume without its snapshots is not supported"
            )
    if not no_snapshots:
        for snapshot in session.exec(select(Snapshot).where(Snapshot.volume_id == volume.id)):
            if snapshot.status != SnapshotStatus.AVAILABLE:
                raise BadRequest(
                    f"Invalid snapshot: snapshot: {snapshot.id} status must be available"
                )


# Read --------------------------------------------------------------------------------------


async def show(req: ApiRequest) -> Response:
    policy.authorize(req.ctx, "volume:get_transfer", req.ctx.project_id)

    def run() -> dict[str, Any]:
        with req.services.db.read() as session:
            return detail(req, visible_transfer(session, req, req.path_params["transfer_id"]))

    return JSONResponse({"transfer": await run_in_threadpool(run)})


async def index(req: ApiRequest) -> Response:
    return await _list(req, detailed=False)


async def index_detail(req: ApiRequest) -> Response:
    return await _list(req, detailed=True)


async def _list(req: ApiRequest, *, detailed: bool) -> Response:
    ctx = req.ctx
    policy.authorize(ctx, "volume:get_all_transfers", ctx.project_id)
    every_project = ctx.is_admin and boolean_param(req, "all_tenants")
    paged = req.at_least(mv.TRANSFER_PAGINATION)
    max_limit = req.services.settings.osapi_max_limit
    limit = int_param(req, "limit") if paged else None
    page = paging.Page(
        sort=sort_param(req, SORT_KEYS) if paged else [("created_at", "asc"), ("id", "asc")],
        limit=max_limit if limit is None else min(limit, max_limit),
        marker=req.query.get("marker") if paged else None,
        offset=(int_param(req, "offset") or 0) if paged else 0,
    )

    def run() -> list[dict[str, Any]]:
        with req.services.db.read() as session:
            stmt = sa_select(Transfer).where(Transfer.deleted.is_(False))
            if not every_project:
                stmt = stmt.where(Transfer.source_project_id == ctx.project_id)
            if "name" in req.query:
                stmt = stmt.where(Transfer.name == req.query["name"])
            try:
                rows = paging.page(
                    session,
                    Transfer,
                    stmt,
                    page,
                    visible=lambda t: (
                        not t.deleted and (every_project or t.source_project_id == ctx.project_id)
                    ),
                )
            except paging.MarkerNotFound as missing:
                raise NotFound(f"Marker {missing} could not be found.") from None
            return [detail(req, t) if detailed else summary(req, t) for t in rows]

    return JSONResponse({"transfers": await run_in_threadpool(run)})


# Accept ------------------------------------------------------------------------------------


async def accept(req: ApiRequest) -> Response:
    """Take a transfer into the caller's project: 202; the volume moves in its workflow."""
    assert isinstance(req.body, AcceptBody)
    auth_key = str(req.body.accept.auth_key)
    transfer_id = req.path_params["transfer_id"]
    ctx = req.ctx
    policy.authorize(ctx, "volume:accept_transfer", ctx.project_id)

    def run() -> tuple[dict[str, Any], OutboxEntry]:
        settings = req.services.settings
        with req.services.db.transaction() as session:
            transfer = session.get(Transfer, transfer_id, with_for_update=True)  # any project's
            if transfer is None or transfer.deleted:
                raise transfer_not_found(transfer_id)
            if not transfer_keys.matches(transfer.salt, transfer.crypt_hash, auth_key):
                raise BadRequest(
                    f"Invalid auth key: Attempt to transfer {transfer_id} with invalid auth key."
                )
            volume = session.get(Volume, transfer.volume_id, with_for_update=True)
            if volume is None or volume.project_id != transfer.source_project_id:
                raise transfer_not_found(transfer_id)  # the volume is gone or someone else's
            if volume.workflow_id is not None:
                raise Conflict(
                    f"Volume {volume.id} is busy: operation "
                    f"{operation_of(volume.workflow_id)} owns it; retry when it ends."
                )
            if volume.status != VolumeStatus.AWAITING_TRANSFER:
                raise invalid_volume(f"Volume {volume.id} status must be awaiting-transfer")
            snapshots = (
                []
                if transfer.no_snapshots
                else list(session.exec(select(Snapshot).where(Snapshot.volume_id == volume.id)))
            )
            for snapshot in snapshots:
                if (
                    snapshot.status != SnapshotStatus.AVAILABLE
                    or snapshot.workflow_id is not None
                    or ownership.holds_on(session, snapshot.id)
                ):
                    raise BadRequest(
                        f"Invalid snapshot: snapshot: {snapshot.id} status must be available"
                    )
            try:
                quota.reserve(
                    session,
                    settings,
                    volume_id=volume.id,
                    project_id=ctx.project_id,
                    deltas=_receiving_deltas(session, settings, volume, snapshots),
                    volume_size=volume.size,
                )
            except quota.QuotaExceeded as over:
                if over.kind != "VolumeSizeExceedsAvailableQuota":
                    raise
                raise OverLimit(over.message) from None  # Cinder catches this one: no prefix
            payload = AcceptTransferInput(
                resource_id=volume.id,
                transfer_id=transfer.id,
                project_id=ctx.project_id,
                user_id=ctx.user_id,
                no_snapshots=transfer.no_snapshots,
                policy=operation_policy(settings),
                request_id=ctx.request_id,
            )
            entry = hand_over(
                session,
                settings,
                "accept_transfer",
                volume,
                payload,
                expected={"status": VolumeStatus.AWAITING_TRANSFER, "workflow_id": None},
                reads=[Read(ResourceKind.SNAPSHOT, s.id) for s in snapshots],
            )
            assert entry is not None, "the row is locked and was checked above"
            return summary(req, transfer), entry

    view, entry = await run_in_threadpool(run)
    await req.services.outbox.start(entry)
    return JSONResponse({"transfer": view}, status_code=202)


def _receiving_deltas(
    session: Session, settings: Any, volume: Volume, snapshots: list[Snapshot]
) -> dict[str, int]:
    """What the receiving project gains (Cinder's four reservations, in its check order)."""
    type_name = session.get(VolumeType, volume.volume_type_id).name  # type: ignore[union-attr]
    deltas = quota.volume_deltas(volume.size, type_name)
    if snapshots:
        deltas.update({"snapshots": len(snapshots), f"snapshots_{type_name}": len(snapshots)})
        if not settings.no_snapshot_gb_quota:
            size = sum(s.volume_size for s in snapshots)
            deltas["gigabytes"] += size
            deltas[f"gigabytes_{type_name}"] += size
    return deltas


# Delete ------------------------------------------------------------------------------------


async def delete(req: ApiRequest) -> Response:
    """Withdraw an offer: the volume is `available` again."""
    policy.authorize(req.ctx, "volume:delete_transfer", req.ctx.project_id)

    def run() -> None:
        with req.services.db.transaction() as session:
            transfer = visible_transfer(
                session, req, req.path_params["transfer_id"], for_update=True
            )
            volume = session.get(Volume, transfer.volume_id, with_for_update=True)
            if volume is not None and volume.workflow_id is not None:
                raise Conflict(
                    f"Volume {volume.id} is busy: operation "
                    f"{operation_of(volume.workflow_id)} owns it; retry when it ends."
                )
            if volume is not None and volume.project_id == transfer.source_project_id:
                compare_and_swap(  # no-op unless it still awaits this transfer
                    session,
                    Volume,
                    volume.id,
                    expected={"status": VolumeStatus.AWAITING_TRANSFER, "workflow_id": None},
                    values={"status": VolumeStatus.AVAILABLE},
                )
            transfer.deleted, transfer.deleted_at = True, utcnow()
            session.add(transfer)

    await run_in_threadpool(run)
    return Response(status_code=202)


for family in FAMILIES:
    offer = TransferCreateBody if family == "/volume-transfers" else LegacyTransferCreateBody
    router.route("POST", family, status=202, body=offer, response=TransferBody)(create)
    router.route("GET", family, response=TransferList)(index)
    router.route("GET", f"{family}/detail", response=TransferList)(index_detail)
    router.route("GET", f"{family}/{{transfer_id}}", response=TransferBody)(show)
    accepted = f"{family}/{{transfer_id}}/accept"
    router.route("POST", accepted, status=202, body=AcceptBody, response=TransferBody)(accept)
    router.route("DELETE", f"{family}/{{transfer_id}}", status=202)(delete)
