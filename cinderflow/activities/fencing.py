"""What every control step that reads or writes an owned row shares: the ownership error."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, SQLModel
from temporalio.exceptions import ApplicationError

from cinderflow.db import ownership

LOST_OWNERSHIP = "LostOwnership"


def lost_ownership(resource_id: str, workflow_id: str) -> ApplicationError:
    """Non-retryable: another party (a reset, the operator) took the row over."""
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
