"""What a `cinderflow worker` process runs.

- the control worker (control task queue): every workflow plus the database and scheduler steps;
- one worker per served backend on `backend:<host>@<name>` with that backend's driver activities;
- per backend, a loop reporting `get_volume_stats()` into its service row (the heartbeat);
- the outbox sweeper, which starts workflows whose start was interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.workflow import _Definition

from cinderflow import heartbeat
from cinderflow.activities.attachments import AttachmentActivities
from cinderflow.activities.compute import ComputeActivities
from cinderflow.activities.driver import MAX_HEARTBEAT_INTERVAL_S, DriverActivities
from cinderflow.activities.images import ImageActivities, ImageStaging
from cinderflow.activities.keys import KeyActivities
from cinderflow.activities.operation import OperationActivities
from cinderflow.activities.scheduler import SchedulerActivities
from cinderflow.activities.snapshots import SnapshotActivities
from cinderflow.activities.volumes import VolumeActivities
from cinderflow.db import idempotency_keys, operation_records, services
from cinderflow.db.engine import Database
from cinderflow.db.models import Message, utcnow
from cinderflow.drivers.base import VolumeDriver
from cinderflow.drivers.registry import load_driver
from cinderflow.failpoints import Failpoints
from cinderflow.keys import image_keys
from cinderflow.keys.service import KeyService, key_service
from cinderflow.scheduling.backends import VOLUME_BINARY
from cinderflow.settings import BackendConfig, Settings
from cinderflow.temporal import record_sweeper, search_attributes
from cinderflow.temporal.client import warn_if_retention_outlives_records
from cinderflow.temporal.converter import SharedPayloadConverter
from cinderflow.temporal.outbox import Outbox
from cinderflow.temporal.queues import backend_queue
from cinderflow.threads import pool, run_blocking
from cinderflow.workflows.registry import WORKFLOWS

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN = timedelta(seconds=10)
HEARTBEAT_THROTTLE = timedelta(seconds=MAX_HEARTBEAT_INTERVAL_S)
"""Driver heartbeats reach Temporal as often as they are made (the SDK would hold them back to
80% of the heartbeat timeout): a cancellation, which arrives with a heartbeat's answer, reaches
the driver call within seconds, so a reset of an operation in flight is not held up."""
REAP_INTERVAL_S = 3600
RECORD_SWEEP_INTERVAL_S = 60


@dataclass
class Backend:
    config: BackendConfig
    host: str  # "<host>@<name>"
    driver: VolumeDriver
    calls: ThreadPoolExecutor
    """Driver calls of activities."""
    stats: ThreadPoolExecutor
    """The periodic stats report: never queued behind slow driver calls."""


def setup_backend(settings: Settings, config: BackendConfig, keys: KeyService) -> Backend:
    driver = load_driver(config, keys)
    driver.do_setup()
    driver.check_for_setup_error()
    return Backend(
        config=config,
        host=f"{settings.host}@{config.name}",
        driver=driver,
        calls=pool(settings.driver_concurrency, f"driver-{config.name}"),
        stats=pool(1, f"stats-{config.name}"),
    )


SharedPayloadConverter.inputs = frozenset(
    hint for flow in WORKFLOWS for hint in _Definition.must_from_class(flow).arg_types
)
"""An input no worker can decode fails its workflow once (temporal/converter.py); the API
checks inputs before they are sent (api/handover.py check_carried)."""

WORKFLOW_RUNNER = UnsandboxedWorkflowRunner()
"""Workflows run outside the SDK's sandbox in the workers. The sandbox re-enters its restricted
environment through `exec` on every activation and payload conversion: 2.6 ms of CPU per
extend here (measured with py-spy), 5 % of the whole stack's, after cinderflow's modules were
already passed through it. What it catches (a clock, random, I/O or a non-deterministic import
in workflow code) is caught where it matters, before a change lands: the strict default sandbox
runs every workflow in the test suite, the Replayer over tests/histories/ and the workflow
tests on the time-skipping server; docs/design.md "Changing workflows safely"."""


class WorkerService:
    def __init__(
        self,
        settings: Settings,
        client: Client,
        db: Database,
        backend_names: list[str] | None = None,
        control: bool = True,
    ) -> None:
        self.settings = settings
        self.client = client
        self.db = db
        self.control = control
        configs = settings.backends
        if backend_names:
            configs = [settings.backend(name) for name in backend_names]
        self.keys = key_service(settings, db)
        self.backends = [setup_backend(settings, config, self.keys) for config in configs]
        self.failpoints = Failpoints(settings.failpoint_dir)
        self.db_pool = pool(settings.db_concurrency, "db")

    def workers(self) -> list[Worker]:
        workers = []
        if self.control:
            settings, db, executor = self.settings, self.db, self.db_pool
            groups = [
                OperationActivities(db, executor, settings.message_ttl),
                VolumeActivities(db, executor),
                SnapshotActivities(db, executor),
                AttachmentActivities(db, executor, settings.message_ttl),
                KeyActivities(db, self.keys, executor),
                ImageActivities(settings, executor),
                SchedulerActivities(db, settings, executor),
                ComputeActivities(settings),
            ]
            workers.append(
                Worker(
                    self.client,
                    task_queue=settings.control_task_queue,
                    workflows=WORKFLOWS,
                    workflow_runner=WORKFLOW_RUNNER,
                    activities=[activity for group in groups for activity in group.all()],
                    max_concurrent_activities=settings.db_concurrency,
                    max_concurrent_local_activities=settings.db_concurrency,
                    graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
                )
            )
        for backend in self.backends:
            calls = DriverActivities(
                backend.driver, self.failpoints, backend.calls, ImageStaging(self.settings)
            )
            workers.append(
                Worker(
                    self.client,
                    task_queue=backend_queue(backend.host),
                    activities=calls.all(),
                    max_concurrent_activities=self.settings.driver_concurrency,
                    max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
                    graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
                )
            )
        return workers

    async def report_stats(self, backend: Backend) -> None:
        stats = await run_blocking(backend.stats, backend.driver.get_volume_stats, True)
        await run_blocking(backend.stats, self._store_stats, backend, stats)

    def _store_stats(self, backend: Backend, stats: dict) -> None:
        zone = backend.config.availability_zone or self.settings.storage_availability_zone
        with self.db.transaction() as session:
            services.report(
                session,
                host=backend.host,
                binary=VOLUME_BINARY,
                availability_zone=zone,
                stats=stats,
            )

    async def _stats_loop(self, backend: Backend) -> None:
        while True:
            await asyncio.sleep(self.settings.stats_interval)
            try:
                await self.report_stats(backend)
            except Exception:
                log.exception("stats report for %s failed", backend.host)

    async def _sweep_loop(self) -> None:
        outbox = Outbox(self.db, self.client, self.db_pool)
        grace = timedelta(seconds=self.settings.outbox_grace)
        while True:
            try:
                await outbox.sweep(grace)
            except Exception:
                log.exception("outbox sweep failed")
            await asyncio.sleep(self.settings.outbox_sweep_interval)

    async def _reap_loop(self) -> None:
        """Delete expired user messages (Cinder's message_reap_interval is a day), the
        records of operations past `operation_retention` and idempotency keys past theirs."""
        while True:
            try:
                await run_blocking(self.db_pool, self._reap)
            except Exception:
                log.exception("reaping expired messages failed")
            await asyncio.sleep(REAP_INTERVAL_S)

    async def _record_loop(self) -> None:
        """End the records of operations whose workflow ended without ending them."""
        while True:
            await asyncio.sleep(RECORD_SWEEP_INTERVAL_S)
            try:
                await record_sweeper.end_orphans(self.client, self.db, self.db_pool)
            except Exception:
                log.exception("ending orphaned operation records failed")

    def _reap(self) -> None:
        with self.db.transaction() as session:
            session.exec(delete(Message).where(Message.expires_at < utcnow()))
            operation_records.prune(
                session, utcnow() - timedelta(seconds=self.settings.operation_retention)
            )
            idempotency_keys.prune(session, self.settings.idempotency_key_retention)

    async def _image_key_loop(self) -> None:
        """Delete the keys of uploaded images that are gone (keys/image_keys.py)."""
        while True:
            await asyncio.sleep(self.settings.image_key_sweep_interval)
            try:
                await run_blocking(
                    self.db_pool, image_keys.sweep, self.settings, self.db, self.keys
                )
            except Exception:
                log.exception("sweeping image keys failed")

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then shut the workers down gracefully."""
        if self.control:
            await search_attributes.ensure_registered(self.client)
            await warn_if_retention_outlives_records(self.client, self.settings)
        for backend in self.backends:  # report before polling, so the scheduler sees us
            await self.report_stats(backend)
        loops = [asyncio.create_task(self._stats_loop(b)) for b in self.backends]
        if self.control:
            loops.append(asyncio.create_task(self._sweep_loop()))
            loops.append(asyncio.create_task(self._reap_loop()))
            loops.append(asyncio.create_task(self._record_loop()))
            loops.append(asyncio.create_task(self._image_key_loop()))
            loops.append(
                asyncio.create_task(
                    heartbeat.beat(
                        self.db,
                        host=self.settings.host,
                        binary="cinder-scheduler",
                        zone=self.settings.storage_availability_zone,
                        interval=self.settings.stats_interval,
                        executor=self.db_pool,
                    )
                )
            )
        workers = self.workers()
        running = [asyncio.create_task(w.run()) for w in workers]
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([stopper, *running], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper:
                    task.result()  # a worker died: raise its error
        finally:
            for loop in loops:
                loop.cancel()
            stopper.cancel()
            await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
            for task in running:
                with contextlib.suppress(BaseException):
                    await task
            for executor in [
                self.db_pool,
                *(b.calls for b in self.backends),
                *(b.stats for b in self.backends),
            ]:
                executor.shutdown(wait=False, cancel_futures=True)
