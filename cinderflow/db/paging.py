"""Sorted, keyset-paginated listing (`sort`, `marker`, `limit`, `offset`) of any table.

NULLs sort first ascending and last descending on every engine (PostgreSQL's default differs),
and `id` always breaks ties, so a marker names one exact position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, false, func, or_, select
from sqlmodel import Session, SQLModel


class MarkerNotFound(LookupError):
    pass


@dataclass
class Page:
    sort: list[tuple[str, str]] = field(default_factory=lambda: [("created_at", "desc")])
    limit: int | None = None
    marker: str | None = None
    offset: int = 0


def count(session: Session, stmt: Any) -> int:
    """How many rows `stmt` selects (ignoring paging)."""
    return session.exec(select(func.count()).select_from(stmt.subquery())).one()[0]


def page(
    session: Session,
    model: type[SQLModel],
    stmt: Any,
    paging: Page,
    *,
    visible: Any = None,
) -> list[Any]:
    """Rows of `stmt` in the page. `visible(marker_row)` says whether the caller may use that
    row as a marker (else MarkerNotFound, as if it did not exist)."""
    order = list(paging.sort)
    if not any(key == "id" for key, _ in order):
        order.append(("id", order[-1][1] if order else "asc"))
    if paging.marker is not None:
        marker = session.get(model, paging.marker)
        if marker is None or (visible is not None and not visible(marker)):
            raise MarkerNotFound(paging.marker)
        stmt = stmt.where(_after(model, marker, order))
    stmt = stmt.order_by(*(_ordering(model, key, direction) for key, direction in order))
    if paging.offset:
        stmt = stmt.offset(paging.offset)
    if paging.limit is not None:
        stmt = stmt.limit(paging.limit)
    return list(session.exec(stmt).scalars().all())


def _ordering(model: type[SQLModel], key: str, direction: str) -> Any:
    """`key` in `direction`, NULLs first ascending and last descending. A column that cannot
    be NULL gets a plain order, so an index in that order serves it (PostgreSQL only matches
    an index whose NULL order is the query's)."""
    column = getattr(model, key)
    if not _nullable(column):
        return column.desc() if direction == "desc" else column.asc()
    return column.desc().nulls_last() if direction == "desc" else column.asc().nulls_first()


def _nullable(column: Any) -> bool:
    table_column = getattr(column, "property", None)
    columns = getattr(table_column, "columns", None)
    return bool(columns[0].nullable) if columns else True


def _after(model: type[SQLModel], marker: Any, order: Sequence[tuple[str, str]]) -> Any:
    """Keyset condition: rows strictly after the marker row in the requested order."""
    clauses = []
    for i, (key, direction) in enumerate(order):
        column, value = getattr(model, key), getattr(marker, key)
        equal_before = [getattr(model, k) == getattr(marker, k) for k, _ in order[:i]]
        if value is None:
            # NULLs sort first ascending: everything non-null comes after.
            beyond = column.is_not(None) if direction == "asc" else false()
        else:
            beyond = column > value if direction == "asc" else column < value
            if direction == "desc":
                beyond = or_(beyond, column.is_(None))
        clauses.append(and_(*equal_before, beyond))
    return or_(*clauses)
