"""Prometheus metrics: `/metrics` on the API's port, and on `metrics_port` of a worker.

Counted where it happens, in the process it happens in (Prometheus sums the processes):
requests (API), operations started (whoever starts the workflow: the API, or a sweeper) and
operations finished with their durations (the worker whose final write ended them). What is
a state rather than an event (operations running and stuck, backend capacity and state,
quota reserved) is read from the database when scraped, so it is the same whichever process
is asked and never drifts (`DatabaseCollector`, registered where the API runs).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func
from sqlmodel import select

from cinderflow.db.engine import Database
from cinderflow.db.models import OperationRecord, Reservation, Service, as_utc, utcnow
from cinderflow.scheduling.backends import VOLUME_BINARY, reports_since
from cinderflow.scheduling.filters import unavailable
from cinderflow.settings import Settings

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
"""cinderflow's own registry (not the client library's global one: tests run many stacks in
one process, and only one of them may own the database collector)."""
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)

REQUESTS = Histogram(
    "cinderflow_api_request_duration_seconds",
    "API requests by route (the path template), method and status code, and how long they took.",
    ["route", "method", "code"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
OPERATIONS_STARTED = Counter(
    "cinderflow_operations_started",
    "Operation workflows started, by operation.",
    ["operation"],
    registry=REGISTRY,
)
OPERATIONS_FINISHED = Histogram(
    "cinderflow_operation_duration_seconds",
    "Operations ended by their final write, by operation and outcome (succeeded, failed, "
    "reset, cancelled), and how long they took from the request.",
    ["operation", "status"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)


def observe_request(route: str, method: str, code: int, seconds: float) -> None:
    REQUESTS.labels(route=route, method=method, code=str(code)).observe(seconds)


def observe_finished(ended: Iterable[OperationRecord]) -> None:
    """Operations a transaction ended (operation_records.ended_in), once it has committed:
    each is counted once, since a retry of that transaction finds it ended already."""
    for record in ended:
        seconds = max((utcnow() - as_utc(record.created_at)).total_seconds(), 0.0)
        OPERATIONS_FINISHED.labels(operation=record.operation, status=record.status or "").observe(
            seconds
        )


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            yield from self._collect()
        except Exception:  # a scrape must not fail because the database is away
            log.warning("metrics: reading the database failed", exc_info=True)

    def _collect(self) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        stuck_before = now - timedelta(seconds=self.settings.stuck_operation_threshold)
        with self.db.read() as session:
            stuck_since = case((OperationRecord.created_at < stuck_before, 1), else_=0)
            running = session.exec(
                select(OperationRecord.operation, func.count(), func.sum(stuck_since))
                .where(OperationRecord.status.is_(None))
                .group_by(OperationRecord.operation)
            ).all()
            services = session.exec(select(Service).where(Service.binary == VOLUME_BINARY)).all()
            reserved = session.exec(
                select(Reservation.resource, func.sum(Reservation.delta)).group_by(
                    Reservation.resource
                )
            ).all()
        counts = {op: count for op, count, _ in running}
        stuck = {op: int(late or 0) for op, _, late in running}
        family = GaugeMetricFamily(
            "cinderflow_operations_running", "Operations not ended yet.", labels=["operation"]
        )
        for op, count in sorted(counts.items()):
            family.add_metric([op], count)
        yield family
        family = GaugeMetricFamily(
            "cinderflow_operations_stuck",
            "Operations running longer than stuck_operation_threshold seconds.",
            labels=["operation"],
        )
        for op in sorted(counts):
            family.add_metric([op], stuck.get(op, 0))
        yield family
        yield from self._backends(services)
        family = GaugeMetricFamily(
            "cinderflow_quota_reserved",
            "Quota held by operations in flight (reservations), by resource.",
            labels=["resource"],
        )
        for resource, total in sorted(reserved):
            family.add_metric([resource], float(total or 0))
        yield family

    def _backends(self, services: list[Service]) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "cinderflow_backend_up",
            "1 if the backend is enabled, reported within service_down_time and its "
            "backend_state is up.",
            labels=["backend"],
        )
        capacity = GaugeMetricFamily(
            "cinderflow_backend_capacity_gigabytes",
            "Backend capacity from its last get_volume_stats report.",
            labels=["backend", "kind"],
        )
        cutoff = reports_since(self.settings.service_down_time)
        for service in services:
            stats = service.capabilities or {}
            up.add_metric([service.host], 0.0 if unavailable(service, cutoff) else 1.0)
            for kind in ("total", "free", "allocated", "provisioned"):
                value = stats.get(f"{kind}_capacity_gb")
                if isinstance(value, int | float):
                    capacity.add_metric([service.host, kind], float(value))
        yield up
        yield capacity


def database_registry(db: Database, settings: Settings) -> CollectorRegistry:
    """A registry of the database's gauges, one per API (tests run several in a process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(db, settings))
    return registry


def exposition(*more: CollectorRegistry) -> bytes:
    """The process's metrics, then `more` (no metric name is in two of them)."""
    return b"".join(generate_latest(registry) for registry in (REGISTRY, *more))


def serve(host: str, port: int) -> Any:
    """A worker's `/metrics` (prometheus-client's server, in its own thread); `shutdown()`
    stops it."""
    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    log.info("metrics on http://%s:%d/metrics", host, port)
    return server
