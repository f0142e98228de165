"""The scheduling activity: read the backends' last reports, filter and weigh them
(scheduling/filters.py), and record the choice as the volume's host.

Backends are the `cinder-volume` service rows their workers keep fresh with driver stats.
"""

from __future__ import annotations

from concurrent.futures import Executor
from datetime import datetime

from sqlmodel import Session
from temporalio import activity

from cinderflow.activities import fencing
from cinderflow.activities.group import ActivityGroup
from cinderflow.db import snapshots as snapshot_db
from cinderflow.db import volumes as volume_db
from cinderflow.db.cas import compare_and_swap
from cinderflow.db.engine import Database
from cinderflow.db.models import Snapshot, Volume
from cinderflow.payloads import ExtendCheck, ExtendPlan, Placement, RetypeCheck, RetypePlan
from cinderflow.scheduling.backends import (
    candidates,
    extend_plan,
    extend_refusal,
    reports_since,
    retype_plan,
)
from cinderflow.scheduling.filters import Request, choose, pool_host
from cinderflow.settings import Settings
from cinderflow.temporal.queues import backend_of
from cinderflow.threads import run_blocking


class SchedulerActivities(ActivityGroup):
    def __init__(self, db: Database, settings: Settings, executor: Executor | None = None) -> None:
        self.db = db
        self.executor = executor
        self.service_down_time_s = settings.service_down_time

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
        best, reason = choose(found, request, self._cutoff())
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
            return extend_plan(session, volume, check.new_size, check.online, self._cutoff())

    @activity.defn(name="scheduler.plan_retype")
    async def plan_retype(self, check: RetypeCheck) -> RetypePlan:
        """The owned volume, its new type and the backend it fits under it (or why none)."""
        return await run_blocking(
            self.executor, self._plan_retype, check, activity.info().workflow_id
        )

    def _plan_retype(self, check: RetypeCheck, workflow_id: str) -> RetypePlan:
        with self.db.read() as session:
            volume = fencing.owned(session, Volume, check.volume_id, workflow_id)
            return retype_plan(session, volume, check, self._cutoff())

    @activity.defn(name="scheduler.check_extend")
    async def check_extend(self, check: ExtendCheck) -> str | None:
        """Why the volume's backend cannot grow it now, or None if it can (workflows that
        started before scheduler.plan_extend existed)."""
        return await run_blocking(self.executor, self._check_extend, check)

    def _check_extend(self, check: ExtendCheck) -> str | None:
        with self.db.read() as session:
            volume = session.get(Volume, check.volume_id)
            return extend_refusal(session, volume, check.new_size, check.online, self._cutoff())

    def _cutoff(self) -> datetime:
        return reports_since(self.service_down_time_s)
