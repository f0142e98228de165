"""Workflow ownership of a row (volume, snapshot): the one rule for who writes its status.

While `workflow_id` is set, only that workflow may change the row's status. Releasing is a
compare-and-swap that also records `last_workflow_id`, so a retried release after a committed
one is recognised and succeeds without writing again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, SQLModel

from cinderflow.db.cas import compare_and_swap


def release(
    session: Session,
    model: type[SQLModel],
    ident: str,
    *,
    workflow_id: str,
    status: str,
    values: dict[str, Any] | None = None,
) -> bool:
    """Set the final status and give up ownership; False if the row is not ours to release."""
    if compare_and_swap(
        session,
        model,
        ident,
        expected={"workflow_id": workflow_id},
        values={
            **(values or {}),
            "status": status,
            "workflow_id": None,
            "last_workflow_id": workflow_id,
        },
    ):
        return True
    row: Any = session.get(model, ident)
    return (
        row is not None
        and row.workflow_id is None
        and row.last_workflow_id == workflow_id
        and row.status == status
    )


def remove(session: Session, model: type[SQLModel], ident: str, *, workflow_id: str) -> bool:
    """Delete the row we own; True also if it is already gone, False if someone else owns it."""
    table: Any = model
    removed = session.exec(
        delete(model).where(table.id == ident, table.workflow_id == workflow_id)
    ).rowcount
    return bool(removed) or session.get(model, ident) is None


def owns(row: Any, workflow_id: str) -> bool:
    return row is not None and row.workflow_id == workflow_id
