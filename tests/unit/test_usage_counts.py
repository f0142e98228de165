"""Quota usage counters (migration 0005's triggers) always equal the rows they count, on
SQLite and PostgreSQL, whichever way the rows change; the migration fills them from the
rows already there."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlmodel import Session, delete, select

from cinderflow.db.engine import Database
from cinderflow.db.migrate import upgrade
from cinderflow.db.models import Snapshot, Volume, VolumeType
from cinderflow.quota import engine as quota
from cinderflow.settings import Settings
from tests.conftest import Databases
from tests.helpers import insert_volume

PROJECTS = ("p", "q")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, databases: Databases) -> Iterator[Database]:
    database = Database(databases.new(request.param))
    yield database
    database.dispose()


def assert_exact(db: Database, settings: Settings) -> dict[str, dict[str, int]]:
    with db.read() as session:
        kept = {p: quota.usage(session, settings, p) for p in PROJECTS}
        counted = {p: quota.counted_usage(session, settings, p) for p in PROJECTS}
    assert kept == counted
    return kept


def snapshot(session: Session, ident: str, volume: str, size: int, **fields: object) -> None:
    values: dict = {"project_id": "p", "user_id": "u", "status": "available", **fields}
    values.setdefault("volume_type_id", session.exec(select(VolumeType.id)).first())
    session.add(Snapshot(id=ident, volume_id=volume, volume_size=size, **values))


@pytest.mark.parametrize("no_snapshot_gb_quota", [False, True])
def test_counters_follow_every_kind_of_row_change(db: Database, no_snapshot_gb_quota: bool) -> None:
    settings = Settings(no_snapshot_gb_quota=no_snapshot_gb_quota)
    with db.transaction() as session:
        default = session.exec(select(VolumeType.id)).one()
        session.add(VolumeType(id="t2", name="gold"))
    steps: list[Callable[[Session], object]] = [
        lambda s: insert_volume(s, "v1", size=3, volume_type_id=default),
        lambda s: insert_volume(s, "v2", size=5, volume_type_id="t2"),
        lambda s: insert_volume(s, "v3", size=7, consumes_quota=False, volume_type_id=default),
        lambda s: snapshot(s, "s1", "v1", 3, volume_type_id=default),
        lambda s: snapshot(s, "s2", "v2", 5, volume_type_id="t2"),
        lambda s: s.exec(sa.update(Volume).where(Volume.id == "v1").values(size=10)),
        lambda s: s.exec(sa.update(Volume).where(Volume.id == "v2").values(project_id="q")),
        lambda s: s.exec(sa.update(Volume).where(Volume.id == "v3").values(consumes_quota=True)),
        lambda s: s.exec(sa.update(Volume).where(Volume.id == "v1").values(volume_type_id="t2")),
        lambda s: s.exec(sa.update(Volume).where(Volume.id == "v1").values(status="in-use")),
        lambda s: s.exec(sa.update(Snapshot).where(Snapshot.id == "s2").values(project_id="q")),
        lambda s: s.exec(delete(Snapshot).where(Snapshot.id == "s1")),
        lambda s: s.exec(sa.update(Volume).where(Volume.id == "v3").values(consumes_quota=False)),
        lambda s: s.exec(delete(Volume).where(Volume.id == "v3")),
    ]
    for step in steps:
        with db.transaction() as session:
            step(session)
        kept = assert_exact(db, settings)
    assert kept["p"]["volumes"] == 1 and kept["p"]["gigabytes_gold"] == 10
    assert kept["q"]["volumes"] == 1 and kept["q"]["snapshots_gold"] == 1
    assert kept["q"]["gigabytes"] == (5 if no_snapshot_gb_quota else 10)
    with db.transaction() as session:  # a rolled-back change leaves the counters alone
        insert_volume(session, "v9", size=100, volume_type_id=default)
        session.flush()
        session.rollback()
    assert assert_exact(db, settings) == kept


COLUMNS_AT_0004 = {column.name for column in Volume.__table__.columns} - {"name_id"}
"""The volumes table at 0004 (name_id came with 0006)."""


def test_migration_counts_the_rows_already_there(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    upgrade(url, "0004")
    old = Database(url)
    with old.transaction() as session:
        for number in range(5):
            volume = insert_volume(
                session, f"v{number}", size=number + 1, project_id=PROJECTS[number % 2]
            )
            session.expunge(volume)  # written as 0004's table has it (no later columns)
            row = {k: v for k, v in volume.model_dump().items() if k in COLUMNS_AT_0004}
            session.execute(sa.insert(Volume.__table__).values(row))
        snapshot(session, "s1", "v0", 1)
    old.dispose()
    upgrade(url)
    db = Database(url)
    try:
        kept = assert_exact(db, Settings())
    finally:
        db.dispose()
    assert kept["p"] == {
        "volumes": 3,
        "volumes___DEFAULT__": 3,
        "gigabytes": 1 + 3 + 5 + 1,
        "gigabytes___DEFAULT__": 10,
        "snapshots": 1,
        "snapshots___DEFAULT__": 1,
    }
