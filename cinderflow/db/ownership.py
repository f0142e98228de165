"""Workflow ownership of a row (volume, snapshot, attachment) and holds on the resources an
operation reads: the one rule for who writes a status, and who may change a resource.

While `workflow_id` is set, only that workflow may change the row's status. Taking a row is a
compare-and-swap from "nobody" (the API's hand-over); releasing is a compare-and-swap back
that also records `last_workflow_id`, so a retried release after a committed one is
recognised and succeeds without writing again.

A hold says "operation W is reading resource R": while it exists, operations that would
change R (extend, delete, retype, transfer) are refused. It is written with the reader's
hand-over and removed by the reader's final write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, delete
from sqlmodel import Session, SQLModel, select

from cinderflow.db.cas import compare_and_swap
from cinderflow.db.models import Hold, utcnow


def take(
    session: Session,
    model: type[SQLModel],
    ident: str,
    *,
    workflow_id: str,
    expected: Mapping[str, Any] | None = None,
    values: Mapping[str, Any] | None = None,
    where: Iterable[ColumnElement[bool]] = (),
) -> bool:
    """Make `workflow_id` the owner of a row nobody owns that matches `expected` and `where`,
    applying `values`; False if the row is owned, gone or does not match."""
    return compare_and_swap(
        session,
        model,
        ident,
        expected={**(expected or {}), "workflow_id": None},
        values={**(values or {}), "workflow_id": workflow_id},
        where=where,
    )


def release(
    session: Session,
    model: type[SQLModel],
    ident: str,
    *,
    workflow_id: str,
    values: Mapping[str, Any],
) -> bool:
    """Apply `values` (the final status among them) and give up ownership; False if the
    row is not ours to release. A retry after a committed release finds the same values and
    `last_workflow_id` and succeeds without writing."""
    if compare_and_swap(
        session,
        model,
        ident,
        expected={"workflow_id": workflow_id},
        values={**values, "workflow_id": None, "last_workflow_id": workflow_id},
    ):
        return True
    row: Any = session.get(model, ident)
    return (
        row is not None
        and row.workflow_id is None
        and row.last_workflow_id == workflow_id
        and all(getattr(row, key) == value for key, value in values.items())
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


# Holds ----------------------------------------------------------------------------------------


def hold(
    session: Session,
    *,
    resource_type: str,
    resource_id: str,
    workflow_id: str,
    holder_id: str,
    operation: str,
) -> None:
    """Record that `workflow_id` reads the resource (in the reader's hand-over transaction)."""
    session.add(
        Hold(
            resource_id=resource_id,
            workflow_id=workflow_id,
            resource_type=resource_type,
            holder_id=holder_id,
            operation=operation,
            created_at=utcnow(),
        )
    )


def holds_on(session: Session, resource_id: str) -> list[Hold]:
    """Who reads the resource now (oldest first)."""
    return list(
        session.exec(select(Hold).where(Hold.resource_id == resource_id).order_by(Hold.created_at))
    )


def not_held(column: Any) -> ColumnElement[bool]:
    """Condition for a compare-and-swap: nobody holds the row whose id is `column`."""
    return ~select(Hold.resource_id).where(Hold.resource_id == column).exists()


def release_holds(session: Session, workflow_id: str) -> int:
    """Drop every hold of a reader; how many there were."""
    return session.exec(delete(Hold).where(Hold.workflow_id == workflow_id)).rowcount


def hold_reason(held: Hold) -> str:
    """Why a held resource cannot change now, in the words of Cinder's busy messages."""
    if held.operation == "create_snapshot":
        return f"snapshot {held.holder_id} is being created from it"
    if held.operation == "create" and held.resource_type == "volume":
        return f"volume {held.holder_id} is being cloned from it"
    if held.operation == "create":
        return f"volume {held.holder_id} is being created from it"
    if held.operation == "retype":
        return f"it is the migration target of volume {held.holder_id}"
    return f"operation {held.operation} of {held.holder_id} is reading it"
