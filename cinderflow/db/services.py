"""Service rows: each backend worker's heartbeat and latest driver stats."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from cinderflow.db.models import Service, utcnow


def report(
    session: Session, *, host: str, binary: str, availability_zone: str, stats: dict[str, Any]
) -> None:
    """Upsert the service row with fresh capabilities; `updated_at` is the heartbeat."""
    now = utcnow()
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(Service).values(
        host=host,
        binary=binary,
        availability_zone=availability_zone,
        disabled=False,
        capabilities=stats,
        created_at=now,
        updated_at=now,
    )
    session.exec(
        statement.on_conflict_do_update(
            index_elements=["host", "binary"],
            set_={
                "capabilities": statement.excluded.capabilities,
                "availability_zone": statement.excluded.availability_zone,
                "updated_at": statement.excluded.updated_at,
            },
        )
    )
