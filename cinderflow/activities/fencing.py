"""What every control step that reads or writes an owned row shares: the ownership error."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, SQLModel
from temporalio.exceptions import ApplicationError

from cinderflow.db import ownership
from cinderflow.temporal.outbox import operation_of

LOST_OWNERSHIP = "LostOwnership"


def lost_ownership(resource_id: str, workflow_id: str) -> ApplicationError:
    """Non-retryable: another party (a reset, the operator) took the row over."""
    return ApplicationError(
        f"{resource_id} is no longer owned by this {operation_of(workflow_id)} operation",
        type=LOST_OWNERSHIP,
        non_retryable=True,
    )


def owned(
    session: Session, model: type[SQLModel], ident: str, workflow_id: str, *, lock: bool = False
) -> Any:
    """The row, if this workflow owns it; LostOwnership otherwise. `lock` (a step that then
    writes): the row stays locked until commit, so a final write by someone else cannot come
    between the check and the write."""
    row = session.get(model, ident, with_for_update=lock)
    if not ownership.owns(row, workflow_id):
        raise lost_ownership(ident, workflow_id)
    return row
