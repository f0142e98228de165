"""User messages: recorded by workflows on asynchronous failures, listed per project."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cinderflow.db.engine import Database
from cinderflow.db.models import Message, utcnow
from tests.helpers import Api, ThreadStack, assert_fault, new_project

NO_BACKEND = "schedule allocate volume:Could not find any available weighted backend."


def fail_a_create(api: Api, stack: ThreadStack) -> tuple[str, str]:
    """Disable the only backend, create a volume: it ends in error with a message."""
    (backend,) = [
        s for s in api.get("/os-services").json()["services"] if s["binary"] == "cinder-volume"
    ]
    api.put("/os-services/disable", {"host": backend["host"], "binary": "cinder-volume"})
    created = api.post("/volumes", {"volume": {"size": 1}})
    volume_id = created.json()["volume"]["id"]
    assert api.wait_status(volume_id, "error")["status"] == "error"
    api.put("/os-services/enable", {"host": backend["host"], "binary": "cinder-volume"})
    return volume_id, created.headers["x-openstack-request-id"]


def messages(api: Api, **params: str) -> list[dict]:
    response = api.get("/messages", params=params)
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def test_failed_create_leaves_a_message(own_stack: ThreadStack) -> None:
    api = own_stack.api()
    volume_id, request_id = fail_a_create(api, own_stack)
    (message,) = messages(api)
    assert message["user_message"] == NO_BACKEND
    assert message["event_id"] == "VOLUME_VOLUME_001_003"
    assert (message["resource_type"], message["resource_uuid"]) == ("VOLUME", volume_id)
    assert message["request_id"] == request_id
    assert (
        message["message_level"] == "ERROR" and message["guaranteed_until"] > message["created_at"]
    )
    shown = api.get(f"/messages/{message['id']}").json()["message"]
    assert shown == message

    assert_fault(api.get("/messages", version="3.2"), 404)
    stranger = api.as_user("bob", project=new_project())
    assert messages(stranger) == []
    assert_fault(stranger.get(f"/messages/{message['id']}"), 404, "could not be found")
    assert_fault(api.as_user("rita", roles="reader").delete(f"/messages/{message['id']}"), 403)
    assert api.delete(f"/messages/{message['id']}").status_code == 204
    assert messages(api) == []
    assert_fault(api.delete(f"/messages/{message['id']}"), 404)


@pytest.fixture
def many(stack: ThreadStack, api: Api) -> list[str]:
    """Five messages of the caller's project, newest last, plus one expired."""
    db = Database(stack.settings.db_url)
    now = utcnow()
    ids = []
    with db.transaction() as session:
        for i in range(5):
            ids.append(f"{api.project[:8]}-m{i}")
            session.add(
                Message(
                    id=ids[-1],
                    project_id=api.project,
                    event_id=f"VOLUME_VOLUME_00{i}_001",
                    message_level="ERROR",
                    action_id=f"00{i}",
                    detail_id="001",
                    resource_type="VOLUME",
                    created_at=now + timedelta(seconds=i),
                    expires_at=now + timedelta(days=1),
                )
            )
        session.add(
            Message(
                id=f"{api.project[:8]}-old",
                project_id=api.project,
                event_id="VOLUME_VOLUME_001_001",
                message_level="ERROR",
                action_id="001",
                detail_id="001",
                created_at=now - timedelta(days=31),
                expires_at=now - timedelta(days=1),
            )
        )
    db.dispose()
    return ids


def test_paging_sorting_filters_and_expiry(api: Api, member: Api, many: list[str]) -> None:
    assert [m["id"] for m in messages(api)] == many[::-1]
    first = messages(api, limit="2")
    rest = messages(api, marker=first[-1]["id"])
    assert [m["id"] for m in first + rest] == many[::-1]
    assert [m["id"] for m in messages(api, sort="created_at:asc")] == many
    assert [m["id"] for m in messages(api, event_id="VOLUME_VOLUME_002_001")] == [many[2]]
    assert messages(api)[0]["user_message"] == "update attachment:An unknown error occurred."
    assert len(api.get("/messages", params={"limit": "2"}, version="3.3").json()["messages"]) == 5
    assert_fault(member.get("/messages", params={"colour": "x"}), 400, "Invalid filters colour")
    assert_fault(api.get("/messages", params={"marker": "nope"}), 404, "Marker nope")
    assert_fault(api.get(f"/messages/{api.project[:8]}-old"), 404)
