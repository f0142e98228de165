"""`/scheduler-stats/get_pools`: the pools the scheduler can use, from the backends' reports."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlmodel import select

from cinderflow.db import services as service_db
from cinderflow.db.engine import Database
from cinderflow.db.models import Service, utcnow
from cinderflow.drivers.base import REQUIRED_STATS
from cinderflow.temporal.devserver import DevServer
from tests.conftest import Databases
from tests.helpers import (
    Api,
    ThreadStack,
    assert_fault,
    stack_settings,
    wait_backends_reported,
)
from tests.retyping import new_type, two_backends

CINDER_KEYS = {
    *REQUIRED_STATS,  # what every driver reports, and what the scheduler adds
    "pool_name",
    "allocated_capacity_gb",
    "provisioned_capacity_gb",
    "reserved_percentage",
    "max_over_subscription_ratio",
    "thin_provisioning_support",
    "thick_provisioning_support",
    "timestamp",
}


def get_pools(api: Api, version: str = "3.71", **params: str) -> list[dict]:
    response = api.get("/scheduler-stats/get_pools", params=params, version=version)
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["pools"], response.json()
    return response.json()["pools"]


def names(api: Api, version: str = "3.71", **params: str) -> list[str]:
    return [p["name"] for p in get_pools(api, version, **params)]


# The default stack: one file backend -------------------------------------------------------------


def test_the_pool_is_where_volumes_are(api: Api, stack: ThreadStack) -> None:
    volume = api.available_volume()
    host = volume["os-vol-host-attr:host"]
    assert host == f"{stack.settings.host}@file#file"
    assert get_pools(api) == [{"name": host}]
    assert get_pools(api, detail="false") == [{"name": host}]
    assert get_pools(api, version="3.0") == [{"name": host}]
    # without the project in the URL (3.67), as every route
    response = api.get("/scheduler-stats/get_pools", project_in_url=False)
    assert response.json() == {"pools": [{"name": host}]}


@pytest.mark.parametrize("detail", ["True", "true", "1"])
def test_detail_shows_the_backends_capabilities(api: Api, stack: ThreadStack, detail: str) -> None:
    api.available_volume(2)
    (pool,) = get_pools(api, detail=detail)
    assert pool["name"] == f"{stack.settings.host}@file#file"
    caps = pool["capabilities"]
    assert set(caps) >= CINDER_KEYS, CINDER_KEYS - set(caps)
    assert (caps["pool_name"], caps["volume_backend_name"]) == ("file", "file")
    assert caps["storage_protocol"] and caps["vendor_name"] and caps["driver_version"]
    assert 0 < caps["free_capacity_gb"] <= caps["total_capacity_gb"]
    assert caps["allocated_capacity_gb"] >= 2  # at least the volume above
    assert (caps["thin_provisioning_support"], caps["thick_provisioning_support"]) == (True, False)
    assert caps["reserved_percentage"] == 0 and caps["max_over_subscription_ratio"] > 0
    reported = datetime.fromisoformat(caps["timestamp"])
    assert abs(utcnow().replace(tzinfo=None) - reported) < timedelta(minutes=1)
    # and whatever else the driver reports
    assert (caps["online_extend_support"], caps["backend_state"]) == (True, "up")


def test_a_bad_detail_is_400(api: Api) -> None:
    response = api.get("/scheduler-stats/get_pools", params={"detail": "maybe"})
    assert_fault(response, 400, "Value 'maybe' for 'detail' is not a boolean.")


def test_only_admins(member: Api) -> None:
    response = member.get("/scheduler-stats/get_pools", params={"detail": "true"})
    assert_fault(response, 403, "scheduler_extension:scheduler_stats:get_pools")


# Two backends, filters, liveness ---------------------------------------------------------------


@pytest.fixture(scope="module")
def two(
    tmp_path_factory: pytest.TempPathFactory, temporal: DevServer, databases: Databases
) -> Iterator[ThreadStack]:
    """A stack whose worker serves backends `gold` and `silver`."""
    tmp = tmp_path_factory.mktemp("pools")
    settings = stack_settings(
        tmp, databases.new("sqlite"), temporal.address, backends=two_backends(tmp)
    )
    running = ThreadStack(settings).start()
    wait_backends_reported(settings.db_url, 2)
    yield running
    running.stop()


def test_each_backend_is_a_pool_with_its_own_allocation(two: ThreadStack) -> None:
    api = two.api()
    host = two.settings.host
    gold, silver = f"{host}@gold#gold", f"{host}@silver#silver"
    assert names(api) == [gold, silver]
    volume = api.available_volume(3, volume_type=new_type(api, "gold")["name"])
    assert volume["os-vol-host-attr:host"] == gold
    by_name = {p["name"]: p["capabilities"] for p in get_pools(api, detail="true")}
    assert by_name[gold]["allocated_capacity_gb"] == 3
    assert by_name[silver]["allocated_capacity_gb"] == 0
    assert by_name[silver]["volume_backend_name"] == "silver"


def test_filters_by_microversion(two: ThreadStack) -> None:
    api = two.api()
    host = two.settings.host
    gold, silver = f"{host}@gold#gold", f"{host}@silver#silver"
    silver_type = new_type(api, "silver")
    assert names(api, "3.27", name=gold) == [gold, silver]  # no filters before 3.28
    assert names(api, "3.28", name=gold) == [gold]
    assert names(api, "3.71", name=silver) == [silver]
    assert names(api, "3.71", name="nowhere@gold#gold") == []
    # 3.28 to 3.30: any capability
    assert names(api, "3.30", volume_backend_name="silver") == [silver]
    assert names(api, "3.30", thin_provisioning_support="true") == [gold, silver]
    assert names(api, "3.30", thin_provisioning_support="false") == []
    # the volume type, by name or id, from 3.35
    assert names(api, "3.34", volume_type=silver_type["name"]) == [gold, silver]
    assert names(api, "3.35", volume_type=silver_type["name"]) == [silver]
    assert names(api, "3.71", volume_type=silver_type["id"]) == [silver]
    assert names(api, "3.71", volume_type=new_type(api, None)["name"]) == [gold, silver]
    assert names(api, "3.71", volume_type=silver_type["name"], name=gold) == []
    unknown = api.get("/scheduler-stats/get_pools", params={"volume_type": "nope"})
    assert_fault(unknown, 404, "Volume type with name nope could not be found.")
    # from 3.31 only Cinder's pool filters, for admins too
    other = api.get(
        "/scheduler-stats/get_pools", params={"volume_backend_name": "gold"}, version="3.31"
    )
    assert_fault(other, 400, "Invalid filters volume_backend_name are found in query options.")


def test_disabled_and_down_backends_are_not_listed(two: ThreadStack) -> None:
    api = two.api()
    host = two.settings.host
    gold, silver = f"{host}@gold#gold", f"{host}@silver#silver"
    db = Database(two.settings.db_url)
    gone = f"gone-{host}@bronze"
    try:
        # a backend whose worker stopped reporting two service_down_times ago
        with db.transaction() as session:
            service_db.report(
                session,
                host=gone,
                binary="cinder-volume",
                availability_zone="nova",
                stats={"volume_backend_name": "bronze", "total_capacity_gb": 10.0},
            )
        with db.transaction() as session:
            row = session.exec(select(Service).where(Service.host == gone)).one()
            row.updated_at = utcnow() - timedelta(seconds=2 * two.settings.service_down_time)
        listed = api.get("/os-services", params={"host": gone}).json()["services"]
        assert [s["state"] for s in listed] == ["down"]
        assert names(api) == [gold, silver]

        ref = {"host": f"{host}@gold", "binary": "cinder-volume"}
        assert api.put("/os-services/disable", ref).status_code == 200
        assert names(api) == [silver]
        assert api.put("/os-services/enable", ref).status_code == 200
        assert names(api) == [gold, silver]
    finally:
        with db.transaction() as session:
            for row in session.exec(select(Service).where(Service.host == gone)):
                session.delete(row)
        db.dispose()
