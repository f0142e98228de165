"""The database layer on SQLite and PostgreSQL: migrations, CAS, serialised writes, paging."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from alembic.script import ScriptDirectory
from sqlmodel import select

from cinderflow.db import volumes as volume_db
from cinderflow.db.cas import compare_and_swap
from cinderflow.db.engine import Database
from cinderflow.db.migrate import alembic_config, current_revision
from cinderflow.db.models import Volume, VolumeType
from tests.conftest import Databases
from tests.helpers import insert_volume


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, databases: Databases) -> Iterator[Database]:
    database = Database(databases.new(request.param))
    yield database
    database.dispose()


def add_volume(db: Database, ident: str, **fields: object) -> None:
    with db.transaction() as session:
        insert_volume(session, ident, **fields)


def test_migrations_reach_head_and_seed_the_default_type(db: Database) -> None:
    assert (
        current_revision(db.url)
        == ScriptDirectory.from_config(alembic_config(db.url)).get_current_head()
    )
    with db.read() as session:
        assert session.exec(select(VolumeType.name)).all() == ["__DEFAULT__"]


def test_compare_and_swap_applies_once(db: Database) -> None:
    add_volume(db, "v")
    with db.transaction() as session:
        assert compare_and_swap(
            session,
            Volume,
            "v",
            expected={"status": ("available", "error")},
            values={"status": "deleting"},
        )
    with db.transaction() as session:
        assert not compare_and_swap(
            session, Volume, "v", expected={"status": "available"}, values={"status": "deleting"}
        )
        assert not compare_and_swap(
            session, Volume, "v", expected={"workflow_id": "x"}, values={"status": "error"}
        )
    with db.read() as session:
        assert session.get(Volume, "v").status == "deleting"


def test_concurrent_cas_has_exactly_one_winner(db: Database) -> None:
    add_volume(db, "race")
    winners: list[int] = []
    start = threading.Barrier(8)

    def contender(n: int) -> None:
        start.wait()
        with db.transaction() as session:
            if compare_and_swap(
                session,
                Volume,
                "race",
                expected={"workflow_id": None},
                values={"workflow_id": f"wf-{n}"},
            ):
                winners.append(n)

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_sqlite_read_then_write_transactions_lose_no_update(databases: Databases) -> None:
    """BEGIN IMMEDIATE serialises whole transactions: 16 concurrent read-increment-write
    transactions all succeed and none is lost (deferred BEGIN fails them with SQLITE_BUSY)."""
    db = Database(databases.new("sqlite"))
    add_volume(db, "counter", size=1)
    start = threading.Barrier(16)
    errors: list[BaseException] = []

    def increment() -> None:
        start.wait()
        try:
            with db.transaction() as session:
                volume = session.get(Volume, "counter")
                volume.size += 1
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=increment) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db.read() as session:
        assert (errors, session.get(Volume, "counter").size) == ([], 17)
    db.dispose()


def test_keyset_pagination_in_every_order(db: Database) -> None:
    for i, (name, size) in enumerate([("b", 2), ("a", 2), ("c", 1), (None, 3), ("d", 2)]):
        add_volume(db, f"v{i}", name=name, size=size)
    for sort in ([("size", "asc")], [("name", "desc")], [("name", "asc"), ("size", "desc")]):
        with db.read() as session:
            everything = [
                v.id
                for v in volume_db.list_volumes(
                    session, volume_db.VolumeQuery(project_id="p", sort=sort)
                )
            ]
            paged: list[str] = []
            marker = None
            while True:
                page = volume_db.list_volumes(
                    session,
                    volume_db.VolumeQuery(project_id="p", sort=sort, limit=2, marker=marker),
                )
                paged += [v.id for v in page]
                if len(page) < 2:
                    break
                marker = page[-1].id
        assert paged == everything and len(everything) == 5, sort


def test_migration_0004_renames_waiting_inputs(tmp_path) -> None:
    """Operations recorded before the framework (inputs named volume_id, snapshot_id) still
    start after the upgrade: their waiting inputs name the resource `resource_id`."""
    import json

    import sqlalchemy as sa
    from alembic import command

    from cinderflow.db.migrate import alembic_config, upgrade

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    upgrade(url, "0003")
    engine = sa.create_engine(url)
    rows = {
        "volume-v1-create-ab": {"volume_id": "v1", "request_id": None},
        "snapshot-s1-create_snapshot-ab": {"snapshot_id": "s1"},
    }
    with engine.begin() as conn:
        for workflow_id, payload in rows.items():
            conn.exec_driver_sql(
                "INSERT INTO workflow_outbox (workflow_id, workflow_type, task_queue, input, "
                "operation, summary, created_at) VALUES (?, 'T', 'q', ?, 'op', '', '2026-01-01')",
                (workflow_id, json.dumps(payload)),
            )

    def inputs() -> dict[str, dict]:
        with engine.begin() as conn:
            found = conn.exec_driver_sql("SELECT workflow_id, input FROM workflow_outbox")
            return {workflow_id: json.loads(payload) for workflow_id, payload in found}

    upgrade(url)
    assert inputs() == {
        "volume-v1-create-ab": {"resource_id": "v1", "request_id": None},
        "snapshot-s1-create_snapshot-ab": {"resource_id": "s1"},
    }
    command.downgrade(alembic_config(url), "0003")
    assert inputs() == rows
    engine.dispose()
