"""Limits, counted usage, reservations and the over-quota check."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from sqlalchemy import delete, func, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from cinderflow.db.models import (
    Quota,
    QuotaLock,
    Reservation,
    Snapshot,
    UsageCount,
    Volume,
    VolumeType,
)
from cinderflow.settings import Settings

PER_TYPE = ("volumes", "gigabytes", "snapshots")
PER_VOLUME = "per_volume_gigabytes"


class QuotaExceeded(Exception):
    """Over a limit; `kind` is Cinder's exception class name (it prefixes the 413 message)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def defaults(settings: Settings, type_names: list[str]) -> dict[str, int]:
    values = {
        "volumes": settings.quota_volumes,
        "snapshots": settings.quota_snapshots,
        "gigabytes": settings.quota_gigabytes,
        "backups": settings.quota_backups,
        "backup_gigabytes": settings.quota_backup_gigabytes,
        "groups": settings.quota_groups,
        PER_VOLUME: settings.per_volume_size_limit,
    }
    for name in type_names:
        values.update({f"{resource}_{name}": -1 for resource in PER_TYPE})
    return values


def type_names(session: Session) -> list[str]:
    return sorted(session.exec(select(VolumeType.name)).all())


def limits(session: Session, settings: Settings, project_id: str) -> dict[str, int]:
    """Every resource's limit for the project: its own where set, else the default."""
    values = defaults(settings, type_names(session))
    for row in session.exec(select(Quota).where(Quota.project_id == project_id)):
        if row.resource in values:
            values[row.resource] = row.hard_limit
    return values


def usage(session: Session, settings: Settings, project_id: str) -> dict[str, int]:
    """Resources in use: the project's live rows (any status), as the triggers keep them
    counted (`usage_counts`), so this costs the same at 10 volumes as at 100 000."""
    rows = session.exec(
        select(UsageCount.kind, VolumeType.name, UsageCount.count, UsageCount.gigabytes)
        .join(VolumeType, VolumeType.id == UsageCount.volume_type_id)
        .where(UsageCount.project_id == project_id)
    )
    return _totals(settings, rows)


def counted_usage(session: Session, settings: Settings, project_id: str) -> dict[str, int]:
    """`usage` counted from the rows themselves: what the counters must always equal
    (tests/unit/test_usage_counts.py holds them to it)."""
    volumes = session.exec(
        select(
            literal("volumes"),
            VolumeType.name,
            func.count(Volume.id),
            func.coalesce(func.sum(Volume.size), 0),
        )
        .join(VolumeType, VolumeType.id == Volume.volume_type_id)
        .where(Volume.project_id == project_id, Volume.consumes_quota)
        .group_by(VolumeType.name)
    ).all()
    snapshots = session.exec(
        select(
            literal("snapshots"),
            VolumeType.name,
            func.count(Snapshot.id),
            func.coalesce(func.sum(Snapshot.volume_size), 0),
        )
        .join(VolumeType, VolumeType.id == Snapshot.volume_type_id)
        .where(Snapshot.project_id == project_id)
        .group_by(VolumeType.name)
    ).all()
    return _totals(settings, [*volumes, *snapshots])


def _totals(settings: Settings, rows: Iterable[tuple[str, str, int, int]]) -> dict[str, int]:
    """Per-resource usage from (kind, type name, count, gigabytes) rows."""
    counts: dict[str, int] = defaultdict(int)
    for kind, type_name, number, size in rows:
        if not number:
            continue
        counts[kind] += number
        counts[f"{kind}_{type_name}"] += number
        if kind == "volumes" or not settings.no_snapshot_gb_quota:
            counts["gigabytes"] += size
            counts[f"gigabytes_{type_name}"] += size
    return dict(counts)


def reserved(session: Session, project_id: str) -> dict[str, int]:
    """Resources held by operations in flight (positive reservations only, as Cinder)."""
    rows = session.exec(
        select(Reservation.resource, func.sum(Reservation.delta))
        .where(Reservation.project_id == project_id, Reservation.delta > 0)
        .group_by(Reservation.resource)
    )
    return {resource: int(total) for resource, total in rows}


def lock(session: Session, project_id: str) -> None:
    """Serialise this transaction with every other quota-changing one of the project.

    SQLite write transactions are already serialised (BEGIN IMMEDIATE); on PostgreSQL this
    takes a row lock held until commit.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.exec(dialect.insert(QuotaLock).values(project_id=project_id).on_conflict_do_nothing())
    session.exec(select(QuotaLock).where(QuotaLock.project_id == project_id).with_for_update())


def volume_deltas(size: int, type_name: str) -> dict[str, int]:
    """What creating one volume consumes, in Cinder's check order."""
    return {
        "volumes": 1,
        "gigabytes": size,
        f"volumes_{type_name}": 1,
        f"gigabytes_{type_name}": size,
    }


def check(
    session: Session,
    settings: Settings,
    project_id: str,
    deltas: Mapping[str, int],
    *,
    volume_size: int | None = None,
) -> None:
    """Raise QuotaExceeded if adding `deltas` (and a volume of `volume_size`) goes over.

    Call after `lock()` in the transaction that then adds the resources.
    """
    limit = limits(session, settings, project_id)
    if volume_size is not None and 0 <= limit[PER_VOLUME] < volume_size:
        raise QuotaExceeded(
            "VolumeSizeExceedsLimit",
            f"Requested volume size {volume_size}G is larger than maximum allowed limit "
            f"{limit[PER_VOLUME]}G.",
        )
    used, held = usage(session, settings, project_id), reserved(session, project_id)
    for resource, delta in deltas.items():
        allowed = limit.get(resource, -1)
        consumed = used.get(resource, 0) + held.get(resource, 0)
        if allowed >= 0 and delta > 0 and consumed + delta > allowed:
            raise _exceeded(resource, delta, allowed, consumed)


def _exceeded(resource: str, delta: int, allowed: int, consumed: int) -> QuotaExceeded:
    if resource.startswith("gigabytes"):
        return QuotaExceeded(
            "VolumeSizeExceedsAvailableQuota",
            f"Requested volume or snapshot exceeds allowed {resource} quota. Requested "
            f"{delta}G, quota is {allowed}G and {consumed}G has been consumed.",
        )
    if resource.startswith("snapshots"):
        return QuotaExceeded(
            "SnapshotLimitExceeded", f"Maximum number of snapshots allowed ({allowed}) exceeded"
        )
    return QuotaExceeded(
        "VolumeLimitExceeded",
        f"Maximum number of volumes allowed ({allowed}) exceeded for quota '{resource}'.",
    )


def reserve(
    session: Session,
    settings: Settings,
    *,
    volume_id: str,
    project_id: str,
    deltas: Mapping[str, int],
    volume_size: int | None = None,
) -> None:
    """Check and hold `deltas` for an operation on `volume_id` (negative deltas are recorded
    too, so a commit can apply them, but never hold anything)."""
    lock(session, project_id)
    check(session, settings, project_id, deltas, volume_size=volume_size)
    for resource, delta in deltas.items():
        if delta:
            session.add(
                Reservation(
                    volume_id=volume_id, project_id=project_id, resource=resource, delta=delta
                )
            )
    session.flush()


def release(session: Session, volume_id: str) -> int:
    """Drop every reservation of the volume; returns how many there were.

    This is both commit and rollback: usage is counted from rows, so a commit is the caller
    changing the rows (new size, new owner) in the same transaction as this release.
    """
    return session.exec(delete(Reservation).where(Reservation.volume_id == volume_id)).rowcount
