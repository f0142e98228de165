"""Long-running process bodies shared by `cinderflow dev`, `api` and `worker`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

import uvicorn

from cinderflow import metrics
from cinderflow.api.app import create_app
from cinderflow.api.framing import CinderH11Protocol
from cinderflow.db.engine import Database
from cinderflow.files import keep_private
from cinderflow.settings import Settings, refuse_insecure_exposure
from cinderflow.temporal.client import connect
from cinderflow.temporal.worker import WorkerService

log = logging.getLogger(__name__)


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("cinderflow").setLevel(level)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (first signal: graceful stop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def api_server(settings: Settings, **app_kwargs) -> uvicorn.Server:
    """A uvicorn server that leaves signal handling to us (no re-raised SIGINT at exit)."""
    config = uvicorn.Config(
        create_app(settings, **app_kwargs),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        lifespan="on",
        http=CinderH11Protocol,
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    return server


async def serve(
    settings: Settings,
    *,
    api: bool,
    worker: bool,
    backend_names: list[str] | None = None,
    control: bool = True,
    on_ready: Callable[[], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the API and/or a worker until `stop` is set (default: SIGINT/SIGTERM), then stop
    them: the API first, then the worker, which finishes its running activities."""
    keep_private()
    if api:
        refuse_insecure_exposure(settings)
    stop = stop or stop_on_signals()
    db = Database(settings.db_url)
    tasks: list[asyncio.Task] = []
    server: uvicorn.Server | None = None
    exporter = None
    try:
        client = await connect(settings, lazy=not worker)
        if worker:
            service = WorkerService(settings, client, db, backend_names, control=control)
            tasks.append(asyncio.create_task(service.run(stop), name="worker"))
            if not api and settings.metrics_port is not None:
                exporter = metrics.serve(settings.metrics_host, settings.metrics_port)
        if api:
            server = api_server(settings, db=db, client=client)
            tasks.append(asyncio.create_task(server.serve(), name="api"))
            while not server.started and not tasks[-1].done():
                await asyncio.sleep(0.05)
        if on_ready and all(not t.done() for t in tasks):
            on_ready()
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and task.exception():
                raise task.exception()  # type: ignore[misc]
        waiter.cancel()
    finally:
        stop.set()
        if server is not None:
            server.should_exit = True
        if exporter is not None:
            exporter.shutdown()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.error("shutdown: %r", result)
        db.dispose()
