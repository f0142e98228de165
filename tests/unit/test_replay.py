"""Replay safety: every committed history (tests/histories/, recorded from the end-to-end
tests) must replay on today's workflow code.

A change to a workflow's command sequence (activities added, removed, reordered; timers;
updates' effects) breaks workflows already running when a worker with the new code picks them
up. Such a change goes behind `workflow.patched()` (docs/design.md, "Changing workflows"); this
test fails until it does. Re-record with CINDERFLOW_RECORD_HISTORIES=1 only to add paths.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from cinderflow.temporal.converter import DATA_CONVERTER
from cinderflow.workflows.registry import OPERATIONS, WORKFLOWS
from tests.helpers import HISTORIES

RECORDED = sorted(HISTORIES.glob("*.json"))


def _history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def _workflow_type(path: Path) -> str:
    events = json.loads(path.read_text())["events"]
    return events[0]["workflowExecutionStartedEventAttributes"]["workflowType"]["name"]


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
async def test_history_replays(path: Path) -> None:
    replayer = Replayer(workflows=WORKFLOWS, data_converter=DATA_CONVERTER)
    await replayer.replay_workflow(_history(path))


def test_every_operation_has_histories() -> None:
    recorded = {_workflow_type(path) for path in RECORDED}
    assert {op.workflow_type for op in OPERATIONS.values()} <= recorded


def _input(events: list[dict]) -> dict:
    payload = events[0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
    return json.loads(base64.b64decode(payload["data"]))


async def test_a_plan_an_older_worker_ignored_replays_as_it_ran() -> None:
    """Rolling upgrade: a new API sends an extend with a plan, a worker from before the plan
    runs its first task (it reads, in a step), a newer worker replays that history."""
    ran = json.loads((HISTORIES / "ExtendVolume-offline-local-steps.json").read_text())
    planned = json.loads((HISTORIES / "ExtendVolume-offline-planned.json").read_text())
    plan = _input(planned["events"])["plan"]
    request = {**_input(ran["events"]), "plan": plan}
    assert request["plan"] is not None
    payload = ran["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
    payload["data"] = base64.b64encode(json.dumps(request).encode()).decode()
    replayer = Replayer(workflows=WORKFLOWS, data_converter=DATA_CONVERTER)
    await replayer.replay_workflow(WorkflowHistory.from_json("hybrid", json.dumps(ran)))
