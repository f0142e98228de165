"""`/os-services`: heartbeats, backend_state, and enable/disable that really take effect."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Api, ThreadStack, assert_fault, poll


def services(api: Api, version: str = "3.71", **params: str) -> list[dict]:
    response = api.get("/os-services", params=params, version=version)
    assert response.status_code == 200, response.text
    return response.json()["services"]


def backend(api: Api) -> dict:
    """The stack's one backend service (a stack just started may not have reported yet)."""
    (found,) = poll(
        lambda: [s for s in services(api) if s["binary"] == "cinder-volume"],
        what="the backend's first report",
    )
    return found


def test_every_part_reports(stack: ThreadStack, api: Api) -> None:
    host = stack.settings.host
    listed = {(s["binary"], s["host"]): s for s in services(api)}
    assert {
        ("cinder-api", host),
        ("cinder-scheduler", host),
        ("cinder-volume", f"{host}@file"),
    } <= set(listed)
    volume = listed[("cinder-volume", f"{host}@file")]
    assert (volume["status"], volume["state"], volume["backend_state"]) == ("enabled", "up", "up")
    assert volume["zone"] == "nova" and volume["updated_at"] and volume["disabled_reason"] is None
    assert (volume["frozen"], volume["cluster"]) == (False, None)
    assert "backend_state" not in listed[("cinder-api", host)]


def test_fields_by_microversion_and_filters(api: Api) -> None:
    old = backend(api)
    at_348 = next(s for s in services(api, "3.48") if s["binary"] == "cinder-volume")
    assert "backend_state" not in at_348 and "cluster" in at_348
    assert "cluster" not in services(api, "3.6")[0]
    (only,) = services(api, binary="cinder-volume", host=old["host"])
    assert only["host"] == old["host"]
    assert services(api, host="nowhere") == []


def test_only_admins(member: Api) -> None:
    assert_fault(member.get("/os-services"), 403, "volume_extension:services:index")
    assert_fault(
        member.put("/os-services/disable", {"host": "h", "binary": "cinder-volume"}),
        403,
        "volume_extension:services:update",
    )


def test_disable_really_stops_placement(own_stack: ThreadStack) -> None:
    api = own_stack.api()
    host = backend(api)["host"]
    disabled = api.put(
        "/os-services/disable-log-reason",
        {"host": host, "binary": "cinder-volume", "disabled_reason": " maintenance "},
    )
    assert disabled.status_code == 200
    assert disabled.json() == {
        "host": host,
        "service": "",
        "binary": "cinder-volume",
        "status": "disabled",
        "disabled": True,
        "disabled_reason": "maintenance",
    }
    assert (backend(api)["status"], backend(api)["disabled_reason"]) == ("disabled", "maintenance")
    assert api.wait_status(api.create_volume()["id"], "error")["status"] == "error"

    enabled = api.put("/os-services/enable", {"host": host, "binary": "cinder-volume"})
    assert enabled.json()["status"] == "enabled" and enabled.json()["disabled_reason"] is None
    assert backend(api)["status"] == "enabled"
    assert api.available_volume()["status"] == "available"
    plain = api.put("/os-services/disable", {"host": host, "service": "cinder-volume"}).json()
    assert plain == {
        "host": host,
        "service": "cinder-volume",
        "binary": "cinder-volume",
        "status": "disabled",
        "disabled": True,
    }


@pytest.mark.parametrize(
    ("path", "body", "code", "fragment"),
    [
        ("disable", {"binary": "cinder-volume"}, 400, "Host field is missing."),
        ("disable", {"host": "h"}, 400, "'binary' is a required property"),
        ("disable", {"host": "h", "binary": "cinder-volume", "x": 1}, 400, "'x' was unexpected"),
        (
            "disable",
            {"host": "nowhere", "binary": "cinder-volume"},
            404,
            "Service cinder-volume could not be found on host nowhere.",
        ),
        (
            "disable-log-reason",
            {"host": "h", "binary": "b", "disabled_reason": "  "},
            400,
            "disabled_reason",
        ),
        (
            "disable-log-reason",
            {"host": "h", "binary": "b"},
            400,
            "'disabled_reason' is a required",
        ),
        ("freeze", {"host": "h"}, 404, "could not be found"),
    ],
)
def test_enable_disable_errors(api: Api, path: str, body: dict, code: int, fragment: str) -> None:
    assert_fault(api.put(f"/os-services/{path}", body), code, fragment)


def test_backend_directory_moved_away_and_back(own_stack: ThreadStack) -> None:
    """Down within two stats intervals, creates fail with a user message, up again after."""
    api = own_stack.api()
    root = Path(own_stack.settings.backends[0].options["path"])
    interval = own_stack.settings.stats_interval
    moved = root.with_name("moved-away")
    root.rename(moved)
    try:
        poll(
            lambda: backend(api)["backend_state"] == "down",
            timeout=2 * interval + 1,
            interval=0.1,
            what="backend_state down",
        )
        assert backend(api)["state"] == "up"  # the worker is alive; its backend is not
        failed = api.wait_status(api.create_volume()["id"], "error")
        (message,) = api.get("/messages").json()["messages"]
        assert message["resource_uuid"] == failed["id"]
        assert message["user_message"].startswith("schedule allocate volume:")
    finally:
        moved.rename(root)
    poll(
        lambda: backend(api)["backend_state"] == "up",
        timeout=2 * interval + 1,
        what="backend_state up",
    )
    assert api.available_volume()["status"] == "available"
