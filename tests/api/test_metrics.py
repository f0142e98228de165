"""`/metrics` (Prometheus) and the request log: the counts match the requests just made."""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import Api, ThreadStack, poll


def scrape(stack: ThreadStack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{stack.url}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_request_and_operation_counts_match(
    api: Api, stack: ThreadStack, caplog: pytest.LogCaptureFixture
) -> None:
    before = scrape(stack)
    caplog.set_level(logging.INFO, logger="cinderflow.api.access")
    volumes = [api.create_volume(1) for _ in range(3)]
    for volume in volumes:
        api.wait_status(volume["id"], "available")
    shown = [api.get(f"/volumes/{volumes[0]['id']}") for _ in range(4)]
    missing = api.get("/volumes/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and all(r.status_code == 200 for r in shown)
    show = {"route": "/volumes/{volume_id}", "method": "GET"}

    def counted() -> dict | None:
        after = scrape(stack)
        finished = value(
            after,
            "cinderflow_operation_duration_seconds_count",
            operation="create",
            status="succeeded",
        ) - value(
            before,
            "cinderflow_operation_duration_seconds_count",
            operation="create",
            status="succeeded",
        )
        name = "cinderflow_api_request_duration_seconds_count"
        missed = value(after, name, **show, code="404") - value(before, name, **show, code="404")
        return after if finished >= 3 and missed >= 1 else None  # (observed after answering)

    after = poll(counted, what="three creates finished in the metrics")
    name = "cinderflow_api_request_duration_seconds_count"
    posts = {"route": "/volumes", "method": "POST", "code": "202"}
    assert value(after, name, **posts) - value(before, name, **posts) == 3
    assert value(after, name, **show, code="404") - value(before, name, **show, code="404") == 1
    # wait_status showed each volume at least once more: count the four shows at least
    assert value(after, name, **show, code="200") - value(before, name, **show, code="200") >= 4
    started = "cinderflow_operations_started_total"
    assert (
        value(after, started, operation="create") - value(before, started, operation="create") == 3
    )
    finished = "cinderflow_operation_duration_seconds_count"
    done = {"operation": "create", "status": "succeeded"}
    assert value(after, finished, **done) - value(before, finished, **done) == 3
    backend = f"{stack.settings.host}@file"
    assert value(after, "cinderflow_backend_up", backend=backend) == 1.0
    assert value(after, "cinderflow_backend_capacity_gigabytes", backend=backend, kind="total") > 0

    def logged() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "cinderflow.api.access"]

    # each line is written once its answer has gone out: the last one may trail the client
    poll(lambda: any("route=/volumes/{volume_id} code=404" in line for line in logged()))
    creates = [line for line in logged() if "method=POST route=/volumes code=202" in line]
    assert len(creates) == 3, logged()
    assert all(f"project={api.project}" in line and "request_id=req-" in line for line in creates)


def test_stuck_operations_and_reserved_quota_are_gauges(api: Api, stack: ThreadStack) -> None:
    """An operation running past `stuck_operation_threshold` counts as stuck; quota held by
    reservations shows by resource (both read from the database at scrape time)."""
    from datetime import timedelta

    from sqlalchemy import delete

    from cinderflow.db import operation_records
    from cinderflow.db.engine import Database
    from cinderflow.db.models import OperationRecord, Reservation, utcnow

    volume_id = str(uuid.uuid4())
    db = Database(stack.settings.db_url)
    before = scrape(stack)
    try:
        with db.transaction() as session:
            record = operation_records.add(
                session,
                workflow_id=f"volume-{volume_id}-probe-00000000",
                operation="probe",
                resource_type="volume",
                resource_id=volume_id,
                volume_id=volume_id,
                project_id=api.project,
                summary="a stuck probe",
            )
            record.created_at = utcnow() - timedelta(
                seconds=stack.settings.stuck_operation_threshold + 60
            )
            session.add(
                Reservation(
                    volume_id=volume_id, project_id=api.project, resource="gigabytes_probe", delta=7
                )
            )
        after = scrape(stack)
    finally:
        with db.transaction() as session:
            session.exec(delete(OperationRecord).where(OperationRecord.resource_id == volume_id))
            session.exec(delete(Reservation).where(Reservation.volume_id == volume_id))
        db.dispose()
    assert value(before, "cinderflow_operations_stuck", operation="probe") == 0
    assert value(after, "cinderflow_operations_stuck", operation="probe") == 1
    assert value(after, "cinderflow_operations_running", operation="probe") == 1
    assert value(after, "cinderflow_quota_reserved", resource="gigabytes_probe") == 7
    assert value(scrape(stack), "cinderflow_quota_reserved", resource="gigabytes_probe") == 0
