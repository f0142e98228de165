"""Service heartbeats: a row per (host, binary) whose `updated_at` says the process is alive.

Backends beat with their driver stats (temporal/worker.py); the API (`cinder-api`) and control
workers (`cinder-scheduler`) beat here, so `os-services` lists every part of a deployment.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

from cinderflow.db import services
from cinderflow.db.engine import Database
from cinderflow.threads import run_blocking

log = logging.getLogger(__name__)


def report(db: Database, *, host: str, binary: str, zone: str) -> None:
    with db.transaction() as session:
        services.report(session, host=host, binary=binary, availability_zone=zone, stats={})


async def beat(
    db: Database,
    *,
    host: str,
    binary: str,
    zone: str,
    interval: float,
    executor: Executor | None = None,
) -> None:
    """Report now and then every `interval` seconds, until cancelled."""
    while True:
        try:
            await run_blocking(executor, lambda: report(db, host=host, binary=binary, zone=zone))
        except Exception:
            log.exception("heartbeat of %s on %s failed", binary, host)
        await asyncio.sleep(interval)
