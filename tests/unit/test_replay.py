"""Replay safety: every committed history (tests/histories/, recorded from the end-to-end
tests) must replay on today's workflow code.

A change to a workflow's command sequence (activities added, removed, reordered; timers;
updates' effects) breaks workflows already running when a worker with the new code picks them
up. Such a change goes behind `workflow.patched()` (docs/design.md, "Changing workflows"); this
test fails until it does. Re-record with CINDERFLOW_RECORD_HISTORIES=1 only to add paths.
"""

from __future__ import annotations

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
