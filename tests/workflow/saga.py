"""A small operation on the operation base, for testing its compensation: it makes two things
(registering how to undo each), then does a piece of work that can wait or fail."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from cinderflow.payloads import FinalWrite, OperationOutcome
    from cinderflow.workflows.operation import OperationInput, OperationWorkflow

STEP = {"start_to_close_timeout": timedelta(seconds=30)}


@workflow.defn(name="TestSaga")
class Saga(OperationWorkflow):
    operation = "saga"

    @workflow.run
    async def run(self, request: OperationInput) -> OperationOutcome:
        return await self.execute(request, self._body(request))

    async def _body(self, request: OperationInput) -> OperationOutcome:
        for thing in ("a", "b"):
            await self.step(
                lambda thing=thing: workflow.execute_activity("test.make", thing, **STEP)
            )
            self.undo_with(
                f"unmake {thing}",
                partial(workflow.execute_activity, "test.unmake", thing, **STEP),
            )
        try:
            await self.step(lambda: workflow.execute_activity("test.work", **STEP))
        except ActivityError:
            return await self.fail(FinalWrite(resource_id=request.resource_id, status="error"))
        return await self.finish(FinalWrite(resource_id=request.resource_id, status="available"))
