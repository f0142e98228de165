"""What every control step that writes an owned row shares: the ownership error, the finish
step (final status, model update, user message, in one transaction)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, SQLModel
from temporalio.exceptions import ApplicationError

from cinderflow import user_messages
from cinderflow.db import ownership
from cinderflow.payloads import Finish

LOST_OWNERSHIP = "LostOwnership"
MODEL_UPDATE_KEYS = frozenset({"provider_location", "provider_id", "progress"})
"""Fields a finish step may set besides the status (the driver's model update, progress)."""


def lost_ownership(resource_id: str, workflow_id: str) -> ApplicationError:
    return ApplicationError(
        f"{resource_id} is no longer owned by workflow {workflow_id}",
        type=LOST_OWNERSHIP,
        non_retryable=True,
    )


def owned(session: Session, model: type[SQLModel], ident: str, workflow_id: str) -> Any:
    """The row, if this workflow owns it; LostOwnership otherwise."""
    row = session.get(model, ident)
    if not ownership.owns(row, workflow_id):
        raise lost_ownership(ident, workflow_id)
    return row


def finish(
    session: Session,
    model: type[SQLModel],
    request: Finish,
    workflow_id: str,
    message_ttl: float,
) -> None:
    update = {k: v for k, v in request.model_update.items() if k in MODEL_UPDATE_KEYS}
    if not ownership.release(
        session, model, request.resource_id,
        workflow_id=workflow_id, status=request.status, values=update,
    ):  # fmt: skip
        raise lost_ownership(request.resource_id, workflow_id)
    row: Any = session.get(model, request.resource_id)
    if request.message and row is not None:
        spec = request.message
        user_messages.record(
            session,
            message_id=user_messages.message_id_for(workflow_id, f"finish-{request.resource_id}"),
            project_id=row.project_id,
            action=spec.action,
            detail=spec.detail,
            resource_type=spec.resource_type,
            resource_uuid=row.id,
            request_id=spec.request_id,
            ttl=message_ttl,
        )


def remove(session: Session, model: type[SQLModel], ident: str, workflow_id: str) -> None:
    if not ownership.remove(session, model, ident, workflow_id=workflow_id):
        raise lost_ownership(ident, workflow_id)
