"""`cinderflow dev`: the whole embedded stack on one machine, with one command.

Temporal dev server (SQLite file), database migrations (SQLite file), one worker for every task
queue, the API, and a default file backend, all under one data directory. Ctrl-C stops the API
and worker, then Temporal. Running it again on the same directory keeps every volume.
"""

from __future__ import annotations

import asyncio
import fcntl
import sys
from pathlib import Path

from cinderflow.db.migrate import upgrade
from cinderflow.files import DATA_FILES, private_directory
from cinderflow.serve import configure_logging, serve
from cinderflow.settings import BackendConfig, Settings, refuse_insecure_exposure
from cinderflow.temporal.devserver import DevServer

DEFAULT_BACKEND = "file"


def with_dev_defaults(settings: Settings) -> Settings:
    """A file backend under the data directory unless backends are configured, and a host name
    kept in the data directory: volumes are bound to `<host>@<backend>` task queues, so a new
    hostname (a container, a renamed laptop) must not orphan the volumes of earlier runs."""
    if not settings.backends:
        path = settings.data_dir / "volumes"
        settings.backends = [BackendConfig(name=DEFAULT_BACKEND, options={"path": str(path)})]
    if "host" not in settings.model_fields_set:
        saved = settings.data_dir / "host"
        if not saved.exists():
            saved.write_text(settings.host)
        settings.host = saved.read_text().strip()
    return settings


DEV_TEMPORAL_HOST = "127.0.0.1"
"""The dev server's gRPC port and Web UI have no authentication: loopback only, whatever
address the API is given."""


def lock_data_dir(data_dir: Path):
    """Hold an exclusive lock: two dev stacks on one directory would corrupt each other."""
    handle = open(data_dir / ".dev.lock", "w")  # noqa: SIM115 (held for the process lifetime)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"cinderflow dev: {data_dir} is in use by another cinderflow dev")
    return handle


def run(settings: Settings, temporal_port: int, ui_port: int) -> int:
    configure_logging()
    refuse_insecure_exposure(settings)  # before anything starts
    data_dir = settings.data_dir
    private_directory(data_dir, files=DATA_FILES)
    lock = lock_data_dir(data_dir)
    settings = with_dev_defaults(settings)
    temporal = DevServer(
        ip=DEV_TEMPORAL_HOST,
        port=temporal_port,
        ui_port=ui_port,
        db_file=data_dir / "temporal.sqlite",
        log_file=data_dir / "temporal.log",
    )
    settings.temporal_address = temporal.address
    settings.temporal_namespace = "default"
    if settings.temporal_ui_url is None:
        settings.temporal_ui_url = temporal.ui_url
    temporal.start()
    try:
        upgrade(settings.db_url)
        api_url = f"http://{settings.api_host}:{settings.api_port}/v3"

        def ready() -> None:
            print(
                "cinderflow dev is running (Ctrl-C to stop)\n"
                f"  API:         {api_url}\n"
                f"  Temporal UI: {temporal.ui_url}\n"
                f"  Temporal:    {temporal.address}\n"
                f"  Data:        {data_dir}\n"
                f"  Try: OS_AUTH_TYPE=noauth OS_USER_ID=admin "
                f"OS_PROJECT_ID=0123456789abcdef0123456789abcdef CINDER_ENDPOINT={api_url} "
                "cinder list",
                flush=True,
            )

        asyncio.run(serve(settings, api=True, worker=True, on_ready=ready))
    finally:
        temporal.stop()
        lock.close()
    print("cinderflow dev stopped", flush=True)
    return 0
