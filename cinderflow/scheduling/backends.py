"""The volume backends as the scheduler sees them (their last reports plus what was placed
since), and the extend check on a volume's own backend: shared by the scheduling activities
and the API, which reads an extend's plan in the transaction that hands the volume over."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import or_
from sqlmodel import Session, select

from cinderflow.db import attachments as attachment_db
from cinderflow.db import volumes as volume_db
from cinderflow.db.models import Service, Snapshot, Volume, VolumeType, utcnow
from cinderflow.db.type_diff import types_diff
from cinderflow.payloads import ExtendPlan, NewType, RetypeCheck, RetypePlan
from cinderflow.scheduling.filters import Candidate, Request, choose, pool_host
from cinderflow.temporal.queues import backend_of

VOLUME_BINARY = "cinder-volume"


def reports_since(service_down_time_s: float) -> datetime:
    """The oldest last report of a backend that is up (`service_down_time`)."""
    return utcnow() - timedelta(seconds=service_down_time_s)


def candidates(session: Session) -> list[Candidate]:
    """Every volume backend, with the sizes placed on it that its last report cannot include:
    volumes still `creating`, and volumes created after the report."""
    services = list(session.exec(select(Service).where(Service.binary == VOLUME_BINARY)))
    oldest = min((s.updated_at for s in services if s.updated_at), default=None)
    recent = session.exec(
        select(Volume.host, Volume.size, Volume.status, Volume.created_at).where(
            Volume.host.is_not(None),
            or_(Volume.status == "creating", Volume.created_at > oldest)
            if oldest
            else Volume.status == "creating",
        )
    ).all()
    result = []
    for service in services:
        pending = sum(
            size
            for host, size, status, created_at in recent
            if backend_of(host) == service.host
            and (status == "creating" or (service.updated_at and created_at > service.updated_at))
        )
        result.append(Candidate(service, pending))
    return result


def extend_refusal(
    session: Session, volume: Volume | None, new_size: int, online: bool, cutoff: datetime
) -> str | None:
    """Why the volume's backend cannot grow it to `new_size` now (capacity, state, online
    extend support), or None if it can: Cinder's scheduler check before a driver extend.
    Backends whose last report is older than `cutoff` are down."""
    if volume is None or volume.host is None:
        return "the volume has no backend"
    request = Request(
        size=new_size - volume.size,
        availability_zone=volume.availability_zone,
        online_extend=online,
    )
    own = [c for c in candidates(session) if c.service.host == backend_of(volume.host)]
    best, reason = choose(own, request, cutoff)
    return None if best is not None else reason


def extend_plan(
    session: Session, volume: Volume, new_size: int, online: bool, cutoff: datetime
) -> ExtendPlan:
    """An extend's reads before the driver's resize: the volume, the backend's answer, the
    attached servers."""
    return ExtendPlan(
        volume=volume_db.volume_ref(session, volume),
        refused=extend_refusal(session, volume, new_size, online, cutoff),
        servers=attachment_db.servers(session, volume.id),
    )


def retype_plan(
    session: Session, volume: Volume, check: RetypeCheck, cutoff: datetime
) -> RetypePlan:
    """A retype's reads before it changes anything (Cinder's `find_retype_backend` and
    `volume_types_diff`): the volume's own backend if it passes the new type's filters,
    else (`on-demand`) the best other one; an administrator's migration names its backend.
    The own backend needs no room for an in-place change, only for a copy (a new
    encryption)."""
    new_type = session.get(VolumeType, check.new_type_id)
    assert new_type is not None, "types in use cannot be deleted"
    diff = types_diff(session, volume.volume_type_id, new_type.id)
    encryption = volume_db.encryption_spec(session, new_type.id)
    target = NewType(
        id=new_type.id,
        name=new_type.name,
        extra_specs=volume_db.extra_specs(session, new_type.id),
        encryption=encryption,
    )
    plan = RetypePlan(
        volume=volume_db.volume_ref(session, volume),
        new_type=target,
        diff=diff,
        snapshots=len(
            session.exec(select(Snapshot.id).where(Snapshot.volume_id == volume.id)).all()
        ),
    )
    attached = attachment_db.live(session, volume.id)
    plan.servers = sorted({a.instance_uuid for a in attached if a.instance_uuid})
    plan.attachments = len(attached)
    plan.unnamed_attachments = sum(1 for a in attached if not a.instance_uuid)
    if volume.host is None:
        plan.refused = "the volume has no backend"
        return plan
    request = Request(
        size=volume.size,
        availability_zone=volume.availability_zone,
        extra_specs=target.extra_specs,
        encryption_provider=encryption.provider if encryption else None,
    )
    found = candidates(session)
    own = [c for c in found if c.service.host == backend_of(volume.host)]
    if check.host is None:
        in_place = replace(request, size=volume.size if diff["encryption"] else 0)
        best, reason = choose(own, in_place, cutoff)
        if best is not None:
            plan.host = volume.host
            return plan
        if check.migration_policy != "on-demand":
            plan.refused = reason
            return plan
        others = [c for c in found if c.service.host != backend_of(volume.host)]
        best, reason = choose(others, request, cutoff)
    else:
        named = [c for c in found if c.service.host == backend_of(check.host)]
        best, reason = choose(named, request, cutoff) if named else (None, "")
        reason = reason or f"No valid backend was found. {check.host} is not a volume backend."
    if best is None:
        plan.refused = reason
        return plan
    if check.host and "#" in check.host and check.host != pool_host(best):
        plan.refused = f"No valid backend was found. {check.host} is not a pool of {best.host}."
        return plan
    plan.host = pool_host(best)
    return plan
