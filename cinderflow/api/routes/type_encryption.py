"""`/types/{id}/encryption` (admin): how volumes of a type are encrypted. Refused while the
type is in use, since existing volumes could not follow."""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cinderflow.api import policy
from cinderflow.api.errors import BadRequest, NotFound
from cinderflow.api.routes.types import type_not_found
from cinderflow.api.routing import ApiRequest, Router
from cinderflow.api.schemas.types import (
    EncryptionBody,
    EncryptionCreateBody,
    EncryptionSpec,
    EncryptionUpdateBody,
    SpecItem,
)
from cinderflow.api.views import timestamp
from cinderflow.db import types as type_db
from cinderflow.db.models import Encryption, VolumeType, utcnow

router = Router()
BASE = "/types/{type_id}/encryption"


def encryption_view(row: Encryption) -> dict[str, Any]:
    """Cinder returns the row's columns, flat."""
    return {
        "volume_type_id": row.volume_type_id,
        "encryption_id": row.id,
        "provider": row.provider,
        "control_location": row.control_location,
        "cipher": row.cipher,
        "key_size": row.key_size,
        "created_at": timestamp(row.created_at),
        "updated_at": timestamp(row.updated_at),
        "deleted": False,
        "deleted_at": None,
    }


def _type(session: Session, type_id: str) -> VolumeType:
    vtype = session.get(VolumeType, type_id, with_for_update=True)
    if vtype is None:
        raise type_not_found(type_id)
    return vtype


def _existing(session: Session, type_id: str) -> Encryption:
    row = type_db.encryption_of(session, type_id)
    if row is None:
        raise NotFound(f"Volume type encryption for type {type_id} does not exist.")
    return row


def _refuse_in_use(session: Session, type_id: str, verb: str) -> None:
    if type_db.in_use(session, type_id):
        raise BadRequest(f"Cannot {verb} encryption specs. Volume type in use.")


@router.route("GET", BASE, response=EncryptionSpec)
async def index(req: ApiRequest) -> Response:
    """The type's encryption spec, or `{}` for an unencrypted type."""
    policy.authorize(req.ctx, "volume_extension:volume_type_encryption:get")

    def run() -> dict[str, Any]:
        with req.services.db.read() as session:
            vtype = _type(session, req.path_params["type_id"])
            row = type_db.encryption_of(session, vtype.id)
            return encryption_view(row) if row else {}

    return JSONResponse(await run_in_threadpool(run))


@router.route("GET", BASE + "/{encryption_id}", response=SpecItem)
async def show(req: ApiRequest) -> Response:
    """One field of the spec, as `{key: value}` (the URL's last segment names the field: one
    path template with PUT and DELETE, whose segment is the spec's id)."""
    policy.authorize(req.ctx, "volume_extension:volume_type_encryption:get")
    key = req.path_params["encryption_id"]

    def run() -> dict[str, Any]:
        with req.services.db.read() as session:
            view = encryption_view(
                _existing(session, _type(session, req.path_params["type_id"]).id)
            )
            if key not in view:
                raise NotFound(f"Volume type encryption has no field {key}.")
            return {key: view[key]}

    return JSONResponse(await run_in_threadpool(run))


@router.route("POST", BASE, body=EncryptionCreateBody, response=EncryptionBody)
async def create(req: ApiRequest) -> Response:
    """Make a type encrypted."""
    policy.authorize(req.ctx, "volume_extension:volume_type_encryption:create")
    assert isinstance(req.body, EncryptionCreateBody)
    spec = req.body.encryption

    def run() -> dict[str, Any]:
        with req.services.db.transaction() as session:
            vtype = _type(session, req.path_params["type_id"])
            _refuse_in_use(session, vtype.id, "create")
            if type_db.encryption_of(session, vtype.id):
                raise BadRequest(f"Volume type encryption for type {vtype.id} already exists.")
            row = Encryption(id=str(uuid.uuid4()), volume_type_id=vtype.id, **spec.model_dump())
            session.add(row)
            sent = spec.model_dump(exclude_unset=True)
            return {**sent, "volume_type_id": vtype.id, "encryption_id": row.id}

    return JSONResponse({"encryption": await run_in_threadpool(run)})


@router.route("PUT", BASE + "/{encryption_id}", body=EncryptionUpdateBody, response=EncryptionBody)
async def update(req: ApiRequest) -> Response:
    """Change the spec of an unused type; echoes the keys sent."""
    policy.authorize(req.ctx, "volume_extension:volume_type_encryption:update")
    assert isinstance(req.body, EncryptionUpdateBody)
    changes = req.body.encryption.model_dump(exclude_unset=True)

    def run() -> None:
        with req.services.db.transaction() as session:
            vtype = _type(session, req.path_params["type_id"])
            _refuse_in_use(session, vtype.id, "update")
            row = _existing(session, vtype.id)
            for field, value in changes.items():
                if value is None and field in ("provider", "control_location"):
                    raise BadRequest(f"Invalid input: {field} can not be null.")
                setattr(row, field, value)
            row.updated_at = utcnow()

    await run_in_threadpool(run)
    return JSONResponse({"encryption": changes})


@router.route("DELETE", BASE + "/{encryption_id}", status=202)
async def delete(req: ApiRequest) -> Response:
    """Make an unused type unencrypted (the id in the URL is not checked, as in Cinder:
    cinderclient sends the literal `provider`)."""
    policy.authorize(req.ctx, "volume_extension:volume_type_encryption:delete")

    def run() -> None:
        with req.services.db.transaction() as session:
            vtype = _type(session, req.path_params["type_id"])
            row = _existing(session, vtype.id)
            _refuse_in_use(session, vtype.id, "delete")
            session.delete(row)

    await run_in_threadpool(run)
    return Response(status_code=202)
