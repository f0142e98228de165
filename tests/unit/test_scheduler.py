"""Backend filters and the capacity weigher (pure functions over service rows)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from cinderflow.activities.scheduler import candidates
from cinderflow.db.engine import Database
from cinderflow.db.models import Service, utcnow
from cinderflow.scheduling.capabilities import match, unmet
from cinderflow.scheduling.filters import (
    Candidate,
    Request,
    choose,
    pool_host,
    usable_capacity,
)
from tests.conftest import Databases
from tests.helpers import insert_volume


def cutoff() -> datetime:
    """Now minus the default service_down_time (computed per use: runs are long)."""
    return utcnow() - timedelta(seconds=60)


def service(
    host: str = "h@b", *, age: float = 0, disabled: bool = False, zone: str = "nova", **caps: Any
) -> Candidate:
    """A backend that reported `caps` `age` seconds ago, with nothing placed since."""
    stats = {
        "volume_backend_name": host.partition("@")[2],
        "backend_state": "up",
        "total_capacity_gb": 100,
        "free_capacity_gb": 50,
        "reserved_percentage": 0,
        "thin_provisioning_support": False,
        **caps,
    }
    row = Service(
        host=host,
        binary="cinder-volume",
        availability_zone=zone,
        disabled=disabled,
        capabilities=stats,
        updated_at=utcnow() - timedelta(seconds=age),
    )
    return Candidate(row)


def request(size: int = 10, **specs: str) -> Request:
    return Request(size=size, availability_zone="nova", extra_specs=specs)


def test_most_free_capacity_wins() -> None:
    best, _ = choose(
        [service("h@a", free_capacity_gb=20), service("h@b", free_capacity_gb=60)],
        request(),
        cutoff(),
    )
    assert best is not None and best.host == "h@b"


def test_each_filter_rejects_with_a_reason() -> None:
    cases = {
        "disabled": service(disabled=True),
        "down (no recent stats)": service(age=120),
        "backend_state is down": service(backend_state="down"),
        "not in availability zone": service(zone="other"),
        "volume_backend_name='wrong' does not meet 'b'": service("h@wrong"),
        "insufficient free capacity": service(free_capacity_gb=5),
    }
    for reason, candidate in cases.items():
        best, why = choose([candidate], request(volume_backend_name="b"), cutoff())
        assert best is None
        assert why.startswith("No valid backend was found.") and reason in why, why


def test_reserved_percentage_is_kept_free() -> None:
    assert (
        usable_capacity(
            {"total_capacity_gb": 100, "free_capacity_gb": 20, "reserved_percentage": 15}, 10
        )
        is None
    )
    assert (
        usable_capacity(
            {"total_capacity_gb": 100, "free_capacity_gb": 30, "reserved_percentage": 15}, 10
        )
        == 5
    )


def test_thin_provisioning_overcommits_up_to_the_ratio() -> None:
    caps = {
        "total_capacity_gb": 10,
        "free_capacity_gb": 5,
        "thin_provisioning_support": True,
        "max_over_subscription_ratio": 20.0,
        "provisioned_capacity_gb": 100,
    }
    assert usable_capacity(caps, 50) == 50.0
    assert usable_capacity(caps, 150) is None  # (100 + 150) / 10 > 20


def test_a_burst_of_thin_creates_between_reports_is_admitted_up_to_free_times_ratio() -> None:
    """1000 x 1 GB placed since the last report on a thin disk with 74 GB free at ratio 20:
    they take no physical space, so they still fit (74 x 20 = 1480 virtual GB); what would
    exceed free x ratio (or the provisioned ratio) is still refused."""
    caps = {
        "total_capacity_gb": 100,
        "free_capacity_gb": 74,
        "thin_provisioning_support": True,
        "max_over_subscription_ratio": 20.0,
        "provisioned_capacity_gb": 0,
    }
    assert usable_capacity(caps, 1, pending_gb=999) == 1480 - 999 - 1
    assert usable_capacity(caps, 1, pending_gb=1479) == 0
    assert usable_capacity(caps, 2, pending_gb=1479) is None  # over free x ratio
    assert usable_capacity(caps, 1481) is None
    thick = {**caps, "thin_provisioning_support": False}
    assert usable_capacity(thick, 1, pending_gb=73) == 0
    assert usable_capacity(thick, 1, pending_gb=74) is None


def test_unknown_capacity_passes_but_loses_to_known_capacity() -> None:
    unknown = {"total_capacity_gb": "unknown", "free_capacity_gb": "infinite"}
    assert usable_capacity(unknown, 10) is not None
    best, _ = choose(
        [service("h@u", **unknown), service("h@k", free_capacity_gb=11)], request(), cutoff()
    )
    assert best is not None and best.host == "h@k"


def test_space_placed_since_the_report_is_not_offered_again() -> None:
    assert usable_capacity({"total_capacity_gb": 100, "free_capacity_gb": 50}, 10, 45) is None
    busy = Candidate(service("h@busy", free_capacity_gb=60).service, pending_gb=40)
    best, _ = choose([busy, service("h@idle", free_capacity_gb=30)], request(), cutoff())
    assert best is not None and best.host == "h@idle"


def test_pending_sizes_come_from_the_volume_table(databases: Databases) -> None:
    db = Database(databases.new("sqlite"))
    report = utcnow()
    with db.transaction() as session:
        session.add(
            Service(
                host="h@b",
                binary="cinder-volume",
                availability_zone="nova",
                capabilities={},
                updated_at=report,
            )
        )

        def add(ident: str, size: int, status: str, created: float, host: str = "h@b#b"):
            insert_volume(
                session,
                ident,
                size=size,
                status=status,
                host=host,
                created_at=report + timedelta(seconds=created),
            )

        add("old-creating", 1, "creating", -60)  # placed, not created yet: not in the report
        add("new", 2, "available", +5)  # created after the report
        add("old", 4, "available", -60)  # in the report already
        add("elsewhere", 8, "creating", +5, host="other@x#x")
    with db.read() as session:
        (only,) = candidates(session)
    assert (only.service.host, only.pending_gb) == ("h@b", 3)
    db.dispose()


def test_no_backends_at_all() -> None:
    assert choose([], request(), cutoff()) == (
        None,
        "No valid backend was found. No backend is reporting.",
    )


def test_pool_host_names_the_pool() -> None:
    assert pool_host(service("vm@file").service) == "vm@file#file"
    assert pool_host(service("vm@file", pool_name="p1").service) == "vm@file#p1"


@pytest.mark.parametrize(
    ("value", "requirement", "expected"),
    [
        (True, "<is> True", True),
        (False, "<is> True", False),
        ("true", "<is> True", True),
        (100, "= 50", True),
        (20, ">= 50", False),
        (3, "== 3", True),
        ("luks", "<in> lu", True),
        ("b", "<or> a <or> b <or> c", True),
        ("d", "<or> a <or> b", False),
        ("abc", "s== abc", True),
        ("abc", "s> abd", False),
        ("fast", "fast", True),
        ("fast", "slow", False),
        ("not a number", ">= 3", False),
        (None, ">= 3", False),
    ],
)
def test_extra_spec_operators(value: object, requirement: str, expected: bool) -> None:
    assert match(value, requirement) is expected


def test_capability_requirements() -> None:
    caps = {"multiattach": True, "thin_provisioning_support": True, "pools": {"tier": "gold"}}
    assert unmet(caps, {"multiattach": "<is> True", "RESKEY:availability_zones": "x"}) is None
    assert unmet(caps, {"capabilities:thin_provisioning_support": "<is> True"}) is None
    assert unmet(caps, {"capabilities:pools:tier": "gold"}) is None
    assert unmet(caps, {"vendor:anything": "ignored"}) is None
    assert unmet(caps, {"replication_enabled": "<is> True"}) == "no capability replication_enabled"
    assert "does not meet" in (unmet(caps, {"multiattach": "<is> False"}) or "")


def test_encryption_and_online_extend_filters() -> None:
    luks_only = service(encryption_providers=["luks"], online_extend_support=False)
    asks = Request(size=1, availability_zone="nova", encryption_provider="luks2")
    best, why = choose([luks_only], asks, cutoff())
    assert best is None and "encryption provider luks2 is not supported (supported: luks)" in why
    plain = Request(size=1, availability_zone="nova", encryption_provider="luks")
    assert choose([luks_only], plain, cutoff())[0] is not None
    no_opinion = service("h@other")  # reports no encryption_providers: not filtered
    assert choose([no_opinion], asks, cutoff())[0] is not None
    extend = Request(size=1, availability_zone="nova", online_extend=True)
    assert "online_extend_support is false" in choose([luks_only], extend, cutoff())[1]
