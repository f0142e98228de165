"""Reset a volume nobody else owns, truthfully: the backend first, then the database.

The API hands the volume to this short workflow (an owned volume's reset goes to its owner's
`reset_status` update instead, workflows/operation.py). It runs the backend half
(reset_backend.py) and writes the reset as its final write; a driver that refuses leaves the
status as it was and records why, unless the administrator forced the reset. A second reset
while this one runs is refused (the API answers 409).
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from cinderflow.payloads import FinalWrite, OperationOutcome, ResetRequest
    from cinderflow.user_messages import Action, Detail
    from cinderflow.workflows.operation import OperationWorkflow
    from cinderflow.workflows.reset_backend import backend_reset, forced_reason


@workflow.defn(name="ResetVolume")
class ResetVolume(OperationWorkflow):
    operation = "reset"
    takes_resets = False
    cancellable = False

    @workflow.run
    async def run(self, request: ResetRequest) -> OperationOutcome:
        return await self.execute(request, self._apply(request))

    async def _apply(self, request: ResetRequest) -> OperationOutcome:
        self.report(f"Resetting to {request.status}: the backend first.")
        failure = await self.shielded(backend_reset(request))
        if failure and not request.force:
            outcome = await self.fail(
                FinalWrite(
                    resource_id=request.resource_id,
                    status=request.current_status,
                    reason=f"reset to {request.status} refused: {failure}",
                    message=self.message(Action.RESET_STATUS, Detail.DRIVER_FAILED_RESET),
                )
            )
            return outcome.model_copy(update={"done": False, "detail": failure})
        return await self.finish(
            FinalWrite(
                resource_id=request.resource_id,
                status=request.status,
                attach_status=request.attach_status,
                migration_status=request.migration_status,
                reason=forced_reason(failure),
            )
        )
