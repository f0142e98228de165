"""The scheduling activity: read the backends' last reports, filter and weigh them
(scheduling/filters.py), and record the choice as the volume's host.

Backends are the `cinder-volume` service rows their workers keep fresh with driver stats.
"""

from __future__ import annotations

from concurrent.futures import Executor
from datetime import timedelta

from sqlalchemy import or_
from sqlmodel import Session, select
from temporalio import activity

from cinderflow.activities import fencing
from cinderflow.activities.group import ActivityGroup
from cinderflow.db import attachments as attachment_db
from cinderflow.db import snapshots as snapshot_db
from cinderflow.db import volumes as volume_db
from cinderflow.db.cas import compare_and_swap
from cinderflow.db.engine import Database
from cinderflow.db.models import Service, Snapshot, Volume, utcnow
from cinderflow.payloads import ExtendCheck, ExtendPlan, Placement
from cinderflow.scheduling.filters import Candidate, Request, choose, pool_host
from cinderflow.settings import Settings
from cinderflow.temporal.queues import backend_of
from cinderflow.threads import run_blocking

VOLUME_BINARY = "cinder-volume"


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


class SchedulerActivities(ActivityGroup):
    def __init__(self, db: Database, settings: Settings, executor: Executor | None = None) -> None:
        self.db = db
        self.executor = executor
        self.service_down_time = timedelta(seconds=settings.service_down_time)

    @activity.defn(name="scheduler.place_volume")
    async def place_volume(self, volume_id: str) -> Placement:
        """Pick a backend for an owned, unplaced volume and record it as the volume's host."""
        return await run_blocking(
            self.executor, self._place, volume_id, activity.info().workflow_id
        )

    def _place(self, volume_id: str, workflow_id: str) -> Placement:
        with self.db.transaction() as session:
            volume = fencing.owned(session, Volume, volume_id, workflow_id)
            snapshot = session.get(Snapshot, volume.snapshot_id) if volume.snapshot_id else None
            source = session.get(Volume, volume.source_volid) if volume.source_volid else None
            origin = session.get(Volume, snapshot.volume_id) if snapshot else source
            if (volume.snapshot_id and snapshot is None) or (
                volume.source_volid and source is None
            ):
                return Placement(reason="the snapshot or volume to copy no longer exists")
            if volume.host is None:  # else: a retry after this step already committed
                reason = self._choose_host(session, volume, origin)
                if reason:
                    return Placement(reason=reason)
                session.refresh(volume)
            return Placement(
                volume=volume_db.volume_ref(session, volume),
                snapshot=snapshot_db.snapshot_ref(session, snapshot) if snapshot else None,
                source_volume=volume_db.volume_ref(session, source) if source else None,
            )

    def _choose_host(self, session: Session, volume: Volume, origin: Volume | None) -> str:
        """Record the chosen host on the volume; the reason if there is none. A copy of a
        snapshot or volume must be made where its source lives (Cinder's same-host rule)."""
        encryption = volume_db.encryption_spec(session, volume.volume_type_id)
        request = Request(
            size=volume.size,
            availability_zone=volume.availability_zone,
            extra_specs=volume_db.extra_specs(session, volume.volume_type_id),
            encryption_provider=encryption.provider if encryption else None,
        )
        found = candidates(session)
        if origin is not None:
            if origin.host is None:
                return "No valid backend was found. The source has no backend."
            found = [c for c in found if c.service.host == backend_of(origin.host)]
        best, reason = choose(found, request, utcnow() - self.service_down_time)
        if best is None:
            return reason
        host = origin.host if origin is not None and origin.host else pool_host(best)
        compare_and_swap(
            session,
            Volume,
            volume.id,
            expected={"workflow_id": volume.workflow_id},
            values={"host": host},
        )
        return ""

    @activity.defn(name="scheduler.plan_extend")
    async def plan_extend(self, check: ExtendCheck) -> ExtendPlan:
        """The owned volume, the backend's answer to growing it, and its attached servers:
        an extend's reads before the resize, in one step (one round trip, one transaction)."""
        return await run_blocking(
            self.executor, self._plan_extend, check, activity.info().workflow_id
        )

    def _plan_extend(self, check: ExtendCheck, workflow_id: str) -> ExtendPlan:
        with self.db.read() as session:
            volume = fencing.owned(session, Volume, check.volume_id, workflow_id)
            return ExtendPlan(
                volume=volume_db.volume_ref(session, volume),
                refused=self._refusal(session, volume, check),
                servers=attachment_db.servers(session, volume.id),
            )

    @activity.defn(name="scheduler.check_extend")
    async def check_extend(self, check: ExtendCheck) -> str | None:
        """Why the volume's backend cannot grow it now (capacity, state, online extend
        support), or None if it can: Cinder's scheduler check before a driver extend."""
        return await run_blocking(self.executor, self._check_extend, check)

    def _check_extend(self, check: ExtendCheck) -> str | None:
        with self.db.read() as session:
            return self._refusal(session, session.get(Volume, check.volume_id), check)

    def _refusal(self, session: Session, volume: Volume | None, check: ExtendCheck) -> str | None:
        if volume is None or volume.host is None:
            return "the volume has no backend"
        request = Request(
            size=check.new_size - volume.size,
            availability_zone=volume.availability_zone,
            online_extend=check.online,
        )
        own = [c for c in candidates(session) if c.service.host == backend_of(volume.host)]
        best, reason = choose(own, request, utcnow() - self.service_down_time)
        return None if best is not None else reason
