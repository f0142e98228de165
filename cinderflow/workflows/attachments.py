"""Connect and disconnect an attachment: the driver (de)exports the volume on its backend,
then the attachment and the volume status are recorded. The API waits for these short
workflows to answer synchronously, as Cinder does.

They own the attachment row (db/ownership.py), not the volume, so they are not operations on
the operation base: a volume reset never takes them over (the API refuses a `detached` reset
while one runs), and they have nothing to compensate.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.attachments import AttachmentActivities
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.payloads import AttachmentFailure, Connected, UserMessageSpec
    from cinderflow.status import AttachStatus
    from cinderflow.user_messages import Action, Code, Detail
    from cinderflow.workflows import common
    from cinderflow.workflows.operation import OperationInput


class AttachmentInput(OperationInput):
    """Input of ConnectAttachment and DisconnectAttachment: the attachment row says the rest."""


async def _failed(
    request: AttachmentInput, status: str, detail: Code, error: ActivityError
) -> ApplicationError:
    await common.run_control(
        AttachmentActivities.failed,
        AttachmentFailure(
            attachment_id=request.resource_id,
            status=status,
            message=UserMessageSpec(
                action=Action.UPDATE_ATTACHMENT.id, detail=detail.id, request_id=request.request_id
            ),
        ),
        f"attachment {status}",
    )
    return ApplicationError(common.failure_message(error), type="DriverFailed", non_retryable=True)


@workflow.defn(name="ConnectAttachment")
class ConnectAttachment:
    @workflow.run
    async def run(self, request: AttachmentInput) -> dict[str, Any]:
        """Returns the connection info; fails (the API answers 500, as Cinder) if the driver
        cannot export the volume."""
        connection = await common.run_control(
            AttachmentActivities.load, request.resource_id, "load attachment"
        )
        host = connection.volume.host
        assert host is not None, "attachments are only created for placed volumes"
        try:
            info = await workflow.execute_activity_method(
                DriverActivities.initialize_connection,
                connection,
                **common.driver(host, request.policy, "driver initialize_connection"),
            )
        except ActivityError as error:
            raise await _failed(
                request, AttachStatus.ERROR_ATTACHING, Detail.ATTACH_ERROR, error
            ) from None
        await common.run_control(
            AttachmentActivities.connected,
            Connected(attachment_id=request.resource_id, connection_info=info),
            "record connection",
        )
        return info


@workflow.defn(name="DisconnectAttachment")
class DisconnectAttachment:
    @workflow.run
    async def run(self, request: AttachmentInput) -> None:
        connection = await common.run_control(
            AttachmentActivities.load, request.resource_id, "load attachment"
        )
        host = connection.volume.host
        if host is not None and connection.connector:
            try:
                await workflow.execute_activity_method(
                    DriverActivities.terminate_connection,
                    connection,
                    **common.driver(host, request.policy, "driver terminate_connection"),
                )
            except ActivityError as error:
                raise await _failed(
                    request, AttachStatus.ERROR_DETACHING, Detail.DETACH_ERROR, error
                ) from None
        await common.run_control(
            AttachmentActivities.remove, request.resource_id, "remove attachment"
        )
