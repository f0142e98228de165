"""Key/value metadata of volumes and snapshots (two tables, one set of operations)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, SQLModel, select

from cinderflow.db.models import SnapshotMetadata, VolumeMetadata


@dataclass(frozen=True)
class MetadataTable:
    model: type[SQLModel]
    owner: str
    """The column naming the owning row (`volume_id`, `snapshot_id`)."""

    def column(self) -> Any:
        return getattr(self.model, self.owner)


VOLUMES = MetadataTable(VolumeMetadata, "volume_id")
SNAPSHOTS = MetadataTable(SnapshotMetadata, "snapshot_id")


def metadata_of(
    session: Session, table: MetadataTable, owner_ids: Iterable[str]
) -> dict[str, dict[str, str]]:
    ids = list(owner_ids)
    result: dict[str, dict[str, str]] = {owner_id: {} for owner_id in ids}
    if ids:
        for row in session.exec(select(table.model).where(table.column().in_(ids))):
            result[getattr(row, table.owner)][row.key] = row.value  # type: ignore[attr-defined]
    return result


def set_metadata(
    session: Session, table: MetadataTable, owner_id: str, items: dict[str, str], *, replace: bool
) -> None:
    """Upsert `items`; with `replace`, keys not in `items` are removed."""
    if replace:
        session.exec(delete(table.model).where(table.column() == owner_id))
    for key, value in items.items():
        session.merge(table.model(**{table.owner: owner_id, "key": key, "value": value}))
    session.flush()


def delete_key(session: Session, table: MetadataTable, owner_id: str, key: str) -> bool:
    model: Any = table.model
    result = session.exec(delete(model).where(table.column() == owner_id, model.key == key))
    return result.rowcount == 1
