"""A workflow whose input its worker cannot decode fails once, saying why, instead of failing
its workflow task again and again (probe finding M1's second half)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import WorkflowFailureError

from cinderflow.temporal.client import connect
from tests.helpers import ThreadStack


def test_an_undecodable_input_fails_the_workflow_once(stack: ThreadStack) -> None:
    async def run() -> WorkflowFailureError:
        client = await connect(stack.settings)
        handle = await client.start_workflow(
            "CreateVolume",
            {"not": "a create request"},
            id=f"undecodable-{uuid.uuid4()}",
            task_queue=stack.settings.control_task_queue,
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(handle.result(), 60)
        history = await handle.fetch_history()
        task_failures = [e for e in history.events if e.HasField(
            "workflow_task_failed_event_attributes")]  # fmt: skip
        assert task_failures == [], "failed as a workflow, not task after task"
        return failed.value

    failure = asyncio.run(run())
    assert "validation error" in str(failure.cause).lower(), failure.cause
