"""Volume type queries: visibility (public or shared with the project), use, encryption."""

from __future__ import annotations

from sqlalchemy import or_
from sqlmodel import Session, select

from cinderflow.db.models import Encryption, Volume, VolumeType, VolumeTypeProject


def accessible(project_id: str):
    """Condition: the type is public or shared with `project_id`."""
    shared = (
        select(VolumeTypeProject.volume_type_id)
        .where(VolumeTypeProject.volume_type_id == VolumeType.id)
        .where(VolumeTypeProject.project_id == project_id)
        .exists()
    )
    return or_(VolumeType.is_public, shared)


def find(session: Session, ref: str, *, project_id: str | None = None) -> VolumeType | None:
    """A type by id or name; with `project_id`, only if that project may use it."""
    for column in (VolumeType.id, VolumeType.name):
        stmt = select(VolumeType).where(column == ref)
        if project_id is not None:
            stmt = stmt.where(accessible(project_id))
        found = session.exec(stmt).first()
        if found is not None:
            return found
    return None


def in_use(session: Session, type_id: str) -> bool:
    """Whether any volume (of any project) has the type."""
    return (
        session.exec(select(Volume.id).where(Volume.volume_type_id == type_id)).first() is not None
    )


def encryption_of(session: Session, type_id: str) -> Encryption | None:
    return session.exec(select(Encryption).where(Encryption.volume_type_id == type_id)).first()


def projects_of(session: Session, type_id: str) -> list[str]:
    rows = session.exec(
        select(VolumeTypeProject.project_id).where(VolumeTypeProject.volume_type_id == type_id)
    )
    return sorted(rows.all())
