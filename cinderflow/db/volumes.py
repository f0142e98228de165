"""Volume queries shared by the API and the activities."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import and_, delete, false, func, or_
from sqlmodel import Session, select

from cinderflow.db.models import (
    Encryption,
    Volume,
    VolumeAdminMetadata,
    VolumeMetadata,
    VolumeType,
    VolumeTypeExtraSpec,
)
from cinderflow.drivers.base import EncryptionSpec, VolumeRef
from cinderflow.encryption import short_name

SORT_KEYS = frozenset(
    {
        "id",
        "name",
        "status",
        "size",
        "created_at",
        "updated_at",
        "availability_zone",
        "bootable",
        "project_id",
        "user_id",
        "volume_type_id",
        "host",
    }
)


class MarkerNotFound(LookupError):
    pass


@dataclass
class VolumeQuery:
    """A list request after parsing: who may see what, filters, order and page."""

    project_id: str | None
    """None: every project (admin with all_tenants)."""
    name: str | None = None
    status: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    bootable: bool | None = None
    availability_zone: str | None = None
    size: int | None = None
    sort: list[tuple[str, str]] = field(default_factory=lambda: [("created_at", "desc")])
    limit: int | None = None
    marker: str | None = None
    offset: int = 0


def _filtered(query: VolumeQuery):
    stmt = select(Volume)
    if query.project_id is not None:
        stmt = stmt.where(Volume.project_id == query.project_id)
    if query.name is not None:
        stmt = stmt.where(Volume.name == query.name)
    if query.status is not None:
        stmt = stmt.where(Volume.status == query.status)
    if query.bootable is not None:
        stmt = stmt.where(Volume.bootable == query.bootable)
    if query.availability_zone is not None:
        stmt = stmt.where(Volume.availability_zone == query.availability_zone)
    if query.size is not None:
        stmt = stmt.where(Volume.size == query.size)
    for key, value in query.metadata.items():
        stmt = stmt.where(
            select(VolumeMetadata.key)
            .where(VolumeMetadata.volume_id == Volume.id)
            .where(VolumeMetadata.key == key, VolumeMetadata.value == value)
            .exists()
        )
    return stmt


def count_volumes(session: Session, query: VolumeQuery) -> int:
    """How many volumes match the filters, ignoring marker and limit."""
    return session.exec(select(func.count()).select_from(_filtered(query).subquery())).one()


def list_volumes(session: Session, query: VolumeQuery) -> list[Volume]:
    stmt = _filtered(query)
    order = list(query.sort)
    if not any(key == "id" for key, _ in order):
        order.append(("id", order[-1][1] if order else "asc"))
    if query.marker is not None:
        stmt = stmt.where(_after_marker(session, query, order))
    # NULLs first ascending, last descending, on every engine (PostgreSQL's default differs).
    stmt = stmt.order_by(
        *(
            getattr(Volume, key).desc().nulls_last()
            if d == "desc"
            else getattr(Volume, key).asc().nulls_first()
            for key, d in order
        )
    )
    if query.offset:
        stmt = stmt.offset(query.offset)
    if query.limit is not None:
        stmt = stmt.limit(query.limit)
    return list(session.exec(stmt).all())


def _after_marker(session: Session, query: VolumeQuery, order: Sequence[tuple[str, str]]):
    """Keyset condition: rows strictly after the marker row in the requested order."""
    marker = session.get(Volume, query.marker)
    if marker is None or (query.project_id is not None and marker.project_id != query.project_id):
        raise MarkerNotFound(query.marker)
    clauses = []
    for i, (key, direction) in enumerate(order):
        column, value = getattr(Volume, key), getattr(marker, key)
        equal_before = [getattr(Volume, k) == getattr(marker, k) for k, _ in order[:i]]
        if value is None:
            # NULLs sort first ascending: everything non-null comes after.
            beyond = column.is_not(None) if direction == "asc" else false()
        else:
            beyond = column > value if direction == "asc" else column < value
            if direction == "desc":
                beyond = or_(beyond, column.is_(None))
        clauses.append(and_(*equal_before, beyond))
    return or_(*clauses)


def metadata_of(session: Session, volume_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    ids = list(volume_ids)
    result: dict[str, dict[str, str]] = {vid: {} for vid in ids}
    if ids:
        rows = session.exec(select(VolumeMetadata).where(VolumeMetadata.volume_id.in_(ids)))
        for row in rows:
            result[row.volume_id][row.key] = row.value
    return result


def admin_metadata_of(session: Session, volume_id: str) -> dict[str, str]:
    rows = session.exec(
        select(VolumeAdminMetadata).where(VolumeAdminMetadata.volume_id == volume_id)
    )
    return {row.key: row.value for row in rows}


def set_metadata(session: Session, volume_id: str, items: dict[str, str], *, replace: bool) -> None:
    """Upsert `items`; with `replace`, keys not in `items` are removed."""
    if replace:
        session.exec(delete(VolumeMetadata).where(VolumeMetadata.volume_id == volume_id))
        existing: dict[str, VolumeMetadata] = {}
    else:
        existing = {
            row.key: row
            for row in session.exec(
                select(VolumeMetadata).where(VolumeMetadata.volume_id == volume_id)
            )
        }
    for key, value in items.items():
        if key in existing:
            existing[key].value = value
        else:
            session.add(VolumeMetadata(volume_id=volume_id, key=key, value=value))
    session.flush()


def delete_metadata_key(session: Session, volume_id: str, key: str) -> bool:
    result = session.exec(
        delete(VolumeMetadata).where(
            VolumeMetadata.volume_id == volume_id, VolumeMetadata.key == key
        )
    )
    return result.rowcount == 1


def type_names(session: Session, type_ids: Iterable[str]) -> dict[str, str]:
    ids = set(type_ids)
    if not ids:
        return {}
    rows = session.exec(select(VolumeType.id, VolumeType.name).where(VolumeType.id.in_(ids)))
    return dict(rows.all())


def extra_specs(session: Session, volume_type_id: str) -> dict[str, str]:
    rows = session.exec(
        select(VolumeTypeExtraSpec).where(VolumeTypeExtraSpec.volume_type_id == volume_type_id)
    )
    return {row.key: row.value for row in rows}


def encryption_spec(session: Session, volume_type_id: str) -> EncryptionSpec | None:
    row = session.exec(
        select(Encryption).where(Encryption.volume_type_id == volume_type_id)
    ).first()
    if row is None:
        return None
    return EncryptionSpec(
        provider=short_name(row.provider),
        control_location=row.control_location,
        cipher=row.cipher,
        key_size=row.key_size,
    )


def volume_ref(session: Session, volume: Volume) -> VolumeRef:
    return VolumeRef(
        id=volume.id,
        size=volume.size,
        project_id=volume.project_id,
        host=volume.host,
        provider_location=volume.provider_location,
        volume_type_id=volume.volume_type_id,
        extra_specs=extra_specs(session, volume.volume_type_id),
        encryption=encryption_spec(session, volume.volume_type_id),
        encryption_key_id=volume.encryption_key_id,
        admin_metadata=admin_metadata_of(session, volume.id),
    )
