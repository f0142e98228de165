"""Volume queries shared by the API and the activities."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy
from sqlmodel import Session, select

from cinderflow.db import paging
from cinderflow.db.models import (
    Encryption,
    Volume,
    VolumeAdminMetadata,
    VolumeImageMetadata,
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


@dataclass
class VolumeQuery:
    """A list request after parsing: who may see what, filters, order and page."""

    project_id: str | None
    """None: every project (admin with all_tenants)."""
    name: str | None = None
    status: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    image_metadata: dict[str, str] = field(default_factory=dict)
    """`glance_metadata`: what the volume keeps of the image it was made from."""
    bootable: bool | None = None
    availability_zone: str | None = None
    size: int | None = None
    sort: list[tuple[str, str]] = field(default_factory=lambda: [("created_at", "desc")])
    limit: int | None = None
    marker: str | None = None
    offset: int = 0


def _filtered(query: VolumeQuery):
    stmt = sqlalchemy.select(Volume)
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
    for table, items in (
        (VolumeMetadata, query.metadata),
        (VolumeImageMetadata, query.image_metadata),
    ):
        for key, value in items.items():
            stmt = stmt.where(
                select(table.key)
                .where(table.volume_id == Volume.id)
                .where(table.key == key, table.value == value)
                .exists()
            )
    return stmt


def image_metadata_of(session: Session, volume_ids: list[str]) -> dict[str, dict[str, str]]:
    """Volume id -> the image metadata it keeps (only volumes made from an image have any)."""
    found: dict[str, dict[str, str]] = {}
    if not volume_ids:
        return found
    rows = session.exec(
        select(VolumeImageMetadata).where(VolumeImageMetadata.volume_id.in_(volume_ids))
    )
    for row in rows:
        found.setdefault(row.volume_id, {})[row.key] = row.value
    return found


def set_image_metadata(session: Session, volume_id: str, items: dict[str, str]) -> None:
    for key, value in items.items():
        session.add(VolumeImageMetadata(volume_id=volume_id, key=key, value=value))


def count_volumes(session: Session, query: VolumeQuery) -> int:
    """How many volumes match the filters, ignoring marker and limit."""
    return paging.count(session, _filtered(query))


def list_volumes(session: Session, query: VolumeQuery) -> list[Volume]:
    def visible(marker: Volume) -> bool:
        return query.project_id is None or marker.project_id == query.project_id

    page = paging.Page(sort=query.sort, limit=query.limit, marker=query.marker, offset=query.offset)
    return paging.page(session, Volume, _filtered(query), page, visible=visible)


def admin_metadata_of(session: Session, volume_id: str) -> dict[str, str]:
    rows = session.exec(
        select(VolumeAdminMetadata).where(VolumeAdminMetadata.volume_id == volume_id)
    )
    return {row.key: row.value for row in rows}


def type_names(session: Session, type_ids: Iterable[str]) -> dict[str, str]:
    ids = set(type_ids)
    if not ids:
        return {}
    rows = session.exec(select(VolumeType.id, VolumeType.name).where(VolumeType.id.in_(ids)))
    return dict(rows.all())


def encrypted_types(session: Session, type_ids: Iterable[str]) -> set[str]:
    """Which of these types have an encryption spec (one query)."""
    ids = set(type_ids)
    if not ids:
        return set()
    rows = session.exec(select(Encryption.volume_type_id).where(Encryption.volume_type_id.in_(ids)))
    return set(rows.all())


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
        name_id=volume.name_id,
    )
