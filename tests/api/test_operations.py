"""The operations resource (list, show, `?wait=N`, cancel refused where an operation cannot
stop) and `Idempotency-Key` on operation-starting POSTs, against the default stack."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import select

from cinderflow.db.engine import Database
from cinderflow.db.models import IdempotencyKey
from tests.helpers import (
    Api,
    Background,
    ThreadStack,
    assert_fault,
    assert_usage_is_recount,
    hold_failpoint,
    poll,
    wait_failpoint,
)

CREATE_HOLD = "driver.create_volume.before"


def operations_of(api: Api, volume_id: str, **params: str) -> list[dict]:
    response = api.get("/operations", params={"resource_id": volume_id, **params})
    assert response.status_code == 200, response.text
    return response.json()["operations"]


def test_an_operation_is_listed_running_then_waited_for_and_hidden_from_other_projects(
    api: Api, stack: ThreadStack
) -> None:
    member = api.as_user("alice")
    hold = hold_failpoint(stack.settings, CREATE_HOLD)
    try:
        created = member.post("/volumes", {"volume": {"size": 1, "name": "ops-1"}})
        assert created.status_code == 202, created.text
        volume_id = created.json()["volume"]["id"]
        wait_failpoint(stack.settings, CREATE_HOLD)
        (running,) = operations_of(member, volume_id)
        assert running["status"] == "running" and running["operation"] == "create"
        assert running["resource_type"] == "volume" and running["resource_id"] == volume_id
        assert running["user_id"] == "alice" and running["project_id"] == api.project
        assert running["request_id"] == created.headers["x-openstack-request-id"]
        assert "Creating 1 GiB" in (running["phase"] or ""), running
        assert "[backend]" in running["phase"] and "@" not in running["phase"]  # hosts: admins
        admin_phase = api.get(f"/operations/{running['id']}").json()["operation"]["phase"]
        assert f"{stack.settings.host}@file" in admin_phase
        assert running["finished_at"] is None and running["cancellable"] is False
        assert "workflow_id" not in running  # admins only
        # the driver's create cannot stop cleanly: 409, and the create goes on
        cancel = member.post(f"/operations/{running['id']}/action", {"cancel": None})
        assert_fault(cancel, 409, "cannot stop cleanly")
        stranger = api.as_user("eve", project=uuid.uuid4().hex)
        assert_fault(stranger.get(f"/operations/{running['id']}"), 404)
        assert operations_of(stranger, volume_id) == []
        assert_fault(stranger.post(f"/operations/{running['id']}/action", {"cancel": None}), 404)
        waited = Background(lambda: member.get(f"/operations/{running['id']}?wait=30"))
        hold.unlink()
        shown = waited.result()
    finally:
        hold.unlink(missing_ok=True)
    assert shown.status_code == 200, shown.text
    done = shown.json()["operation"]
    assert done["status"] == "succeeded" and done["finished_at"] is not None, done
    assert api.volume(volume_id)["status"] == "available"
    admin_view = api.get(f"/operations/{done['id']}").json()["operation"]
    assert admin_view["workflow_id"].startswith(f"volume-{volume_id}-create-")
    # filters and paging
    api.post(f"/volumes/{volume_id}/action", {"os-extend": {"new_size": 2}})
    api.wait_status(volume_id, "available")
    assert [o["operation"] for o in operations_of(api, volume_id)] == ["extend", "create"]
    assert [o["operation"] for o in operations_of(api, volume_id, operation="create")] == ["create"]
    assert len(operations_of(api, volume_id, status="succeeded")) == 2
    assert operations_of(api, volume_id, status="failed") == []
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert operations_of(api, volume_id, since=later) == []
    first = api.get("/operations", params={"resource_id": volume_id, "limit": 1}).json()
    assert len(first["operations"]) == 1 and first["operations_links"][0]["rel"] == "next"
    rest = operations_of(api, volume_id, limit="1", marker=first["operations"][0]["id"])
    assert [o["operation"] for o in rest] == ["create"]
    ended = member.post(f"/operations/{done['id']}/action", {"cancel": None})
    assert_fault(ended, 409, "has ended")
    assert_fault(api.get("/operations", params={"status": "stuck"}), 400)
    assert_fault(api.get(f"/operations/{done['id']}?wait=1000"), 400)
    assert_fault(api.get("/operations/no-such-operation"), 404)


def test_one_idempotency_key_makes_one_volume(any_stack: ThreadStack) -> None:
    """20 parallel creates with one key: 20 x 202 with one volume id, one row, quota +1; the
    key with another body is 409; once the window has passed, the key is free (SQLite and
    PostgreSQL)."""
    stack, api = any_stack, any_stack.api()
    key = str(uuid.uuid4())
    body = {"volume": {"size": 1, "name": "idem"}}
    headers = {"Idempotency-Key": key}

    def create(_: int):
        return api.post("/volumes", body, headers=headers)

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(create, range(20)))
    assert [r.status_code for r in responses] == [202] * 20, [
        r.text for r in responses if r.status_code != 202
    ]
    ids = {r.json()["volume"]["id"] for r in responses}
    assert len(ids) == 1, ids
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 19
    (volume_id,) = ids
    listed = api.get("/volumes", params={"name": "idem"}).json()["volumes"]
    assert [v["id"] for v in listed] == [volume_id]
    usage = api.get(f"/os-quota-sets/{api.project}?usage=True").json()["quota_set"]
    assert usage["volumes"]["in_use"] + usage["volumes"]["reserved"] == 1, usage
    api.wait_status(volume_id, "available")
    other = api.post("/volumes", {"volume": {"size": 2, "name": "idem"}}, headers=headers)
    assert_fault(other, 409, "Idempotency-Key was used for another request")
    again = api.post("/volumes", body, headers=headers)
    assert again.status_code == 202 and again.json()["volume"]["id"] == volume_id
    assert_fault(api.post("/volumes", body, headers={"Idempotency-Key": "a b"}), 400)
    # another project's request under the same key is its own
    elsewhere = api.as_user("admin", project=uuid.uuid4().hex)
    theirs = elsewhere.post("/volumes", body, headers=headers)
    assert theirs.status_code == 202 and theirs.json()["volume"]["id"] != volume_id
    # after the window
    db = Database(stack.settings.db_url)
    try:
        with db.transaction() as session:
            kept = session.exec(
                select(IdempotencyKey).where(IdempotencyKey.project_id == api.project)
            ).one()
            assert kept.key != key and key not in kept.key  # only its hash
            assert volume_id.encode() not in kept.response  # sealed

            session.exec(
                update(IdempotencyKey)
                .where(IdempotencyKey.project_id == api.project)
                .values(created_at=datetime.now(UTC) - timedelta(days=2))
            )
    finally:
        db.dispose()
    fresh = api.post("/volumes", {"volume": {"size": 2, "name": "idem"}}, headers=headers)
    assert fresh.status_code == 202 and fresh.json()["volume"]["id"] != volume_id
    for ident in (volume_id, fresh.json()["volume"]["id"], theirs.json()["volume"]["id"]):
        poll(lambda i=ident: api.volume(i) is None or api.volume(i)["status"] == "available")
    assert_usage_is_recount(stack, api.project)


def test_a_replayed_action_starts_nothing(api: Api) -> None:
    """A retried extend under its key answers 202 again instead of "New size for extend
    must be greater than current size" (cloud-provider-openstack #1265)."""
    volume = api.available_volume(1)
    headers = {"Idempotency-Key": f"extend-{volume['id']}"}
    action = {"os-extend": {"new_size": 2}}
    first = api.post(f"/volumes/{volume['id']}/action", action, headers=headers)
    assert first.status_code == 202, first.text
    api.wait_status(volume["id"], "available")
    second = api.post(f"/volumes/{volume['id']}/action", action, headers=headers)
    assert second.status_code == 202 and second.headers["idempotent-replayed"] == "true"
    assert [o["operation"] for o in operations_of(api, volume["id"])] == ["extend", "create"]
    assert api.volume(volume["id"])["size"] == 2


def test_parallel_retries_of_an_extend_answer_as_the_first(api: Api) -> None:
    """Ten parallel extends under one key: the first extends; the others are refused by what
    it changed ("must be greater than current size" or "status must be available") or lose
    the claim, and each answers with the first one's 202: one extend operation."""
    volume = api.available_volume(1)
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    action = {"os-extend": {"new_size": 2}}
    with ThreadPoolExecutor(10) as pool:
        responses = list(
            pool.map(
                lambda _: api.post(f"/volumes/{volume['id']}/action", action, headers=headers),
                range(10),
            )
        )
    assert [r.status_code for r in responses] == [202] * 10, [r.text for r in responses]
    api.wait_status(volume["id"], "available")
    assert [o["operation"] for o in operations_of(api, volume["id"])] == ["extend", "create"]


def test_attachments_and_workflows_gone_end_their_records(api: Api, stack: ThreadStack) -> None:
    """An attach ends its record when it connects; a record whose workflow Temporal does not
    know (and no outbox entry will start) is ended by the control worker's sweep."""
    import asyncio

    from cinderflow.db import operation_records
    from cinderflow.temporal.client import connect
    from cinderflow.temporal.record_sweeper import end_orphans

    volume = api.available_volume(1)
    connector = {"host": "ops-host", "initiator": "iqn.2026-12.test:ops"}
    made = api.post(
        "/attachments",
        {"attachment": {"volume_uuid": volume["id"], "connector": connector}},
        version="3.54",
    )
    assert made.status_code == 200, made.text
    (attach,) = operations_of(api, volume["id"], operation="attach")
    assert attach["status"] == "succeeded" and attach["resource_type"] == "attachment"
    ghost = str(uuid.uuid4())
    db = Database(stack.settings.db_url)
    try:
        with db.transaction() as session:
            operation_records.add(
                session,
                workflow_id=f"volume-{ghost}-create-00000000",
                operation="create",
                resource_type="volume",
                resource_id=ghost,
                volume_id=ghost,
                project_id=api.project,
                summary="never started",
            )

        async def sweep() -> int:
            client = await connect(stack.settings)
            return await end_orphans(client, db, None, grace=timedelta(0))

        assert asyncio.run(sweep()) >= 1
    finally:
        db.dispose()
    (gone,) = operations_of(api, ghost)
    assert gone["status"] == "failed" and "gone" in gone["error"], gone
