"""An online extend the driver finishes on a stack with no compute configured: the volume
is extended, nobody is told (there is no one to tell), and that is no failure: no user
message, no warning, no traceback, one INFO line.

(When the driver needs the compute's completion, no compute is a failure: see
tests/workflow/test_extend.py, `test_no_compute_configured_fails_fast`.)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from cinderflow.drivers import qemu_img
from tests.helpers import Api, ThreadStack, history_steps, poll, temporal_cli, workflows_of
from tests.workflow.test_extend import attached

GIB = 1 << 30
QUIET = "no compute endpoint configured; not telling servers"


def closed(address: str, workflow_id: str) -> bool:
    shown = temporal_cli(address, "workflow", "describe", "-w", workflow_id, "-o", "json")
    status = json.loads(shown)["workflowExecutionInfo"]["status"]
    return status == "WORKFLOW_EXECUTION_STATUS_COMPLETED"


def test_online_extend_without_a_compute_is_quiet(
    api: Api, stack: ThreadStack, caplog: pytest.LogCaptureFixture
) -> None:
    assert stack.settings.compute_endpoint is None
    caplog.set_level(logging.INFO, logger="cinderflow.activities.compute")
    volume_id, server = attached(api)
    response = api.post(
        f"/volumes/{volume_id}/action", {"os-extend": {"new_size": 2}}, version="3.42"
    )
    assert response.status_code == 202, response.text

    volume = api.wait_status(volume_id, "in-use", "error_extending")
    assert (volume["status"], volume["size"]) == ("in-use", 2)
    files = Path(stack.settings.backends[0].options["path"])
    assert qemu_img.info(files / f"volume-{volume_id}")["virtual-size"] == 2 * GIB

    # the event step runs after the final write: wait for the whole operation
    address = stack.settings.temporal_address
    (workflow_id,) = poll(lambda: workflows_of(address, volume_id, "extend"), what="extend")
    poll(lambda: closed(address, workflow_id), what=f"{workflow_id} completed")
    assert history_steps(address, workflow_id) == [
        "driver.extend_volume",
        "operation.finish",
        "compute.volume_extended",  # and no operation.record_message after it
    ]
    listed = api.get("/messages", version="3.5").json()["messages"]
    assert [m for m in listed if m["resource_uuid"] == volume_id] == []

    quiet = [r for r in caplog.records if QUIET in r.getMessage()]
    assert [(r.levelno, r.name) for r in quiet] == [(logging.INFO, "cinderflow.activities.compute")]
    assert server in quiet[0].getMessage() and volume_id in quiet[0].getMessage()
    loud = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING
        and (volume_id in r.getMessage() or "compute.volume_extended" in r.getMessage())
    ]
    assert loud == [], [(r.getMessage(), r.exc_info) for r in loud]
