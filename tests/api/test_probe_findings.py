"""The black-box probe's findings (issue 13), each from its original trigger: the new answer is
a Cinder fault, nothing changed, nothing stuck."""

from __future__ import annotations

import json
import logging
import socket
import uuid
from datetime import timedelta

import pytest
from sqlmodel import select

from cinderflow.db.engine import Database
from cinderflow.db.models import Attachment, Message, utcnow
from tests.api.test_transfers import accept, offer, receiver, settled
from tests.fake_compute import CONNECTOR
from tests.helpers import (
    Api,
    ThreadStack,
    assert_fault,
    hold_failpoint,
    new_project,
    poll,
    wait_failpoint,
    workflows_of,
)

SURROGATE_KEY = b'{"\\ud800": {}}'


def nested(depth: int) -> dict:
    value: dict = {"host": "deep"}
    for _ in range(depth):
        value = {"x": value}
    return value


def attachments_of(stack: ThreadStack, volume_id: str) -> list[Attachment]:
    db = Database(stack.settings.db_url)
    try:
        with db.read() as session:
            return list(session.exec(select(Attachment).where(Attachment.volume_id == volume_id)))
    finally:
        db.dispose()


# M1 -------------------------------------------------------------------------------------------


def test_a_deeply_nested_connector_is_refused_and_wedges_nothing(
    api: Api, stack: ThreadStack
) -> None:
    """The probe's ~500-byte body with a connector nested ~200 deep answered 500 after 60 s
    and left the volume `reserved` for good."""
    volume = api.available_volume(1)
    body = {"attachment": {"volume_uuid": volume["id"], "connector": nested(200)}}
    assert_fault(api.post("/attachments", body), 400, "nests deeper")
    assert_fault(api.post("/attachments", {"attachment": {
        "volume_uuid": volume["id"], "connector": nested(5)}}), 400, "deeper than 4")  # fmt: skip
    big = {"host": "h", "extra": "x" * 20000}
    assert_fault(api.post("/attachments", {"attachment": {
        "volume_uuid": volume["id"], "connector": big}}), 400, "larger than")  # fmt: skip
    assert api.volume(volume["id"])["status"] == "available"
    assert attachments_of(stack, volume["id"]) == []

    reserved = api.post("/attachments", {"attachment": {"volume_uuid": volume["id"]}})
    attachment_id = reserved.json()["attachment"]["id"]
    update = {"attachment": {"connector": nested(200)}}
    assert_fault(api.put(f"/attachments/{attachment_id}", update), 400)
    connected = api.put(f"/attachments/{attachment_id}", {"attachment": {"connector": CONNECTOR}})
    assert connected.status_code == 200, connected.text
    assert api.delete(f"/attachments/{attachment_id}").status_code == 200
    assert api.delete(f"/volumes/{volume['id']}").status_code == 202
    api.wait_gone(volume["id"])


def test_connector_values_that_would_fail_its_row_are_refused(api: Api, stack: ThreadStack) -> None:
    """A shallow connector whose `host` is a list (or `mode` an object) used to wedge the
    attach workflow on its database write; NaN reached PostgreSQL's JSON column."""
    volume = api.available_volume(1)
    for connector, fragment in (
        ({"host": ["a"]}, "'host' must be a string"),
        ({"host": "h", "mountpoint": "m" * 300}, "'mountpoint' must be a string"),
        ({"host": "h", "mode": {"x": 1}}, "'mode' must be 'rw' or 'ro'"),
    ):
        body = {"attachment": {"volume_uuid": volume["id"], "connector": connector}}
        assert_fault(api.post("/attachments", body), 400, fragment)
    for raw in (b"NaN", b"Infinity", b"1e999"):
        content = b'{"attachment": {"volume_uuid": "%s", "connector": {"host": "h", "x": %s}}}' % (
            volume["id"].encode(),
            raw,
        )
        json_type = {"Content-Type": "application/json"}
        answer = api.post("/attachments", content=content, headers=json_type)
        assert_fault(answer, 400, "Malformed request body")
    assert attachments_of(stack, volume["id"]) == []
    assert api.volume(volume["id"])["status"] == "available"


def test_a_body_nested_too_deep_anywhere_is_refused(api: Api) -> None:
    assert_fault(api.post("/volumes", {"volume": {"size": 1, "x": nested(40)}}), 400, "nests")


# M2 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("roles", [None, ""])
def test_lone_surrogates_are_400_before_policy(api: Api, roles: str | None) -> None:
    """Every place the probe put `\\ud800` answered 500, some before the policy check; a
    caller without any role gets the same 400 (not 403, and no database read)."""
    caller = api if roles is None else api.as_user("nobody", roles=roles)
    volume_id = str(uuid.uuid4())
    json_headers = {"Content-Type": "application/json"}

    def post(path: str, raw: bytes):
        return caller.post(path, content=raw, headers=json_headers)

    def put(path: str, raw: bytes):
        return caller.put(path, content=raw, headers=json_headers)

    answers = {
        "action body": post(f"/volumes/{volume_id}/action", SURROGATE_KEY),
        "metadata filter": caller.get("/volumes", params={"metadata": '{"\\ud800": "v"}'}),
        "literal filter": caller.get("/volumes/detail", params={"metadata": "{'\\ud800': 'v'}"}),
        "connector host": post(
            "/attachments",
            b'{"attachment": {"volume_uuid": "%s", "connector": {"host": "\\udc00"}}}'
            % volume_id.encode(),
        ),
        "extra spec value": post(
            f"/types/{uuid.uuid4()}/extra_specs", b'{"extra_specs": {"k": "\\ud800"}}'
        ),
        "quota key": put(f"/os-quota-sets/{api.project}", b'{"quota_set": {"\\ud800x": 1}}'),
        "reset value": post(
            f"/volumes/{volume_id}/action", b'{"os-reset_status": {"status": "\\ud800"}}'
        ),
        "volume name": post("/volumes", b'{"volume": {"size": 1, "name": "a\\ud800b"}}'),
    }
    for where, answer in answers.items():
        assert answer.status_code == 400, f"{where}: {answer.status_code} {answer.text}"
        assert "Unicode" in answer.json()["badRequest"]["message"], where


# L2 -------------------------------------------------------------------------------------------


def test_attachment_reads_need_a_reader_role(api: Api) -> None:
    """A user of the project with neither reader nor member role read its attachments,
    connection_info included."""
    volume = api.available_volume(1)
    created = api.post(
        "/attachments", {"attachment": {"volume_uuid": volume["id"], "connector": CONNECTOR}}
    )
    attachment_id = created.json()["attachment"]["id"]
    outsider = api.as_user("roleless", roles="")
    assert_fault(outsider.get("/attachments"), 403, "volume:attachment_get_all")
    assert_fault(outsider.get("/attachments/detail"), 403, "volume:attachment_get_all")
    assert_fault(outsider.get(f"/attachments/{attachment_id}"), 404)
    reader = api.as_user("reader", roles="reader")
    assert reader.get(f"/attachments/{attachment_id}").status_code == 200
    assert [a["id"] for a in reader.get("/attachments").json()["attachments"]] == [attachment_id]
    assert api.delete(f"/attachments/{attachment_id}").status_code == 200


# L3 -------------------------------------------------------------------------------------------


def test_a_message_marker_of_another_project_is_unknown(api: Api, stack: ThreadStack) -> None:
    """Another project's message id as a marker told whether it exists."""
    other = new_project()
    foreign = str(uuid.uuid4())
    db = Database(stack.settings.db_url)
    now = utcnow()
    with db.transaction() as session:
        session.add(Message(
            id=foreign, project_id=other, event_id="VOLUME_VOLUME_001_001",
            message_level="ERROR", action_id="001", detail_id="001",
            created_at=now, expires_at=now + timedelta(days=1),
        ))  # fmt: skip
    db.dispose()
    member = api.as_user("alice")
    missing = str(uuid.uuid4())
    unknown = assert_fault(member.get(f"/messages?marker={missing}", version="3.5"), 404)
    hidden = assert_fault(member.get(f"/messages?marker={foreign}", version="3.5"), 404)
    assert hidden == unknown.replace(missing, foreign)
    assert api.get(f"/messages?marker={foreign}&all_tenants=1", version="3.5").status_code == 200


# L4 -------------------------------------------------------------------------------------------


def test_the_default_type_cannot_be_renamed_or_made_private(api: Api) -> None:
    """Renaming the default type or making it private turned create without a type,
    GET /types/default and type delete into 500s."""
    default = api.get("/types/default").json()["volume_type"]
    for change in ({"name": f"renamed-{uuid.uuid4().hex[:6]}"}, {"is_public": False}):
        assert_fault(
            api.put(f"/types/{default['id']}", {"volume_type": change}), 400, "default volume type"
        )
    described = api.put(f"/types/{default['id']}", {"volume_type": {"description": "the one"}})
    assert described.status_code == 200, described.text
    again = api.get("/types/default").json()["volume_type"]
    assert (again["name"], again["is_public"]) == (default["name"], True)
    volume = api.available_volume(1)
    assert volume["volume_type"] == default["name"]
    assert_fault(api.delete(f"/types/{default['id']}"), 400, "default volume type")


# L6 -------------------------------------------------------------------------------------------


def test_a_client_gone_mid_body_is_not_an_error(
    api: Api, stack: ThreadStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    host, port = stack.settings.api_host, stack.settings.api_port
    with socket.create_connection((host, port)) as sock:
        sock.sendall(
            f"POST /v3/{api.project}/volumes HTTP/1.1\r\nHost: {host}\r\n"
            f"X-Auth-Token: admin:{api.project}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n".encode()
            + b'{"volume": {"si'
        )
    poll(
        lambda: any("client disconnected" in r.getMessage() for r in caplog.records),
        what="the disconnect logged",
    )
    loud = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(("cinderflow.api", "uvicorn"))
    ]
    assert loud == [], [r.getMessage() for r in loud]
    assert not any(r.exc_info for r in caplog.records)


# H2 -------------------------------------------------------------------------------------------


def test_a_busy_answer_carries_no_workflow_id(api: Api, stack: ThreadStack) -> None:
    """The probe's parallel accepts were refused with the running workflow's id (what it
    takes to signal or terminate it): now with the operation's name only."""
    volume = api.available_volume(1)
    created = offer(api, volume["id"])
    other = receiver(api)
    point = "driver.accept_transfer.before"
    hold = hold_failpoint(stack.settings, point)
    try:
        assert accept(other, created["id"], created["auth_key"]).status_code == 202
        wait_failpoint(stack.settings, point)
        busy = accept(other, created["id"], created["auth_key"])
        message = assert_fault(busy, 409, "operation accept_transfer owns it")
        assert stack_workflow_ids(stack, volume["id"]), "the accept runs"
        for ident in stack_workflow_ids(stack, volume["id"]):
            assert ident not in message
    finally:
        hold.unlink()
    settled(api, volume["id"])


def stack_workflow_ids(stack: ThreadStack, volume_id: str) -> list[str]:
    return workflows_of(stack.settings.temporal_address, volume_id)


# L7 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"GARBAGE\r\n\r\n", b"GET /v3 HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"],
)
def test_malformed_http_gets_a_cinder_fault(stack: ThreadStack, raw: bytes) -> None:
    with socket.create_connection((stack.settings.api_host, stack.settings.api_port)) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer
    assert b"content-type: application/json" in head.lower()
    fault = json.loads(body)
    assert fault["badRequest"]["code"] == 400
    assert "Malformed request" in fault["badRequest"]["message"]
