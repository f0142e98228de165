"""Compare-and-swap updates (Cinder's `conditional_update`, spec cinder-api-atomic-status-change).

A status change is one `UPDATE ... WHERE <expected>`; whoever loses a race sees rowcount 0 and
reports the right error after re-reading, instead of acting on stale data.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, inspect, update
from sqlmodel import Session, SQLModel

from cinderflow.db.models import utcnow


def expectation(model: type[SQLModel], expected: Mapping[str, Any]) -> list[ColumnElement[bool]]:
    """`{column: value}`: a collection means IN, None means IS NULL, anything else equality."""
    conditions: list[ColumnElement[bool]] = []
    for name, want in expected.items():
        column = getattr(model, name)
        if want is None:
            conditions.append(column.is_(None))
        elif isinstance(want, Collection) and not isinstance(want, str):
            conditions.append(column.in_(list(want)))
        else:
            conditions.append(column == want)
    return conditions


def compare_and_swap(
    session: Session,
    model: type[SQLModel],
    ident: Any,
    *,
    expected: Mapping[str, Any],
    values: Mapping[str, Any],
    where: Iterable[ColumnElement[bool]] = (),
) -> bool:
    """Apply `values` to row `ident` only if it matches `expected` and `where`; True if it did.

    Pending changes are flushed first, and a swapped row already loaded in the session is
    expired, so reads later in the transaction see what the swap wrote."""
    session.flush()
    statement = (
        update(model)
        .where(model.id == ident, *expectation(model, expected), *where)  # type: ignore[attr-defined]
        .values(**values, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if session.execute(statement).rowcount != 1:
        return False
    loaded = session.identity_map.get(inspect(model).identity_key_from_primary_key([ident]))
    if loaded is not None:
        session.expire(loaded)
    return True
