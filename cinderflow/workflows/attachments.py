"""Connect and disconnect an attachment: the driver (de)exports the volume on its backend,
then the attachment and the volume status are recorded. The API waits for these short
workflows to answer synchronously, as Cinder does."""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.attachments import AttachmentActivities
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.payloads import AttachmentFailure, AttachmentInput, Connected, UserMessageSpec
    from cinderflow.user_messages import Action, Code, Detail
    from cinderflow.workflows import common


async def _failed(
    request: AttachmentInput, status: str, detail: Code, error: ActivityError
) -> ApplicationError:
    await workflow.execute_activity_method(
        AttachmentActivities.failed,
        AttachmentFailure(
            attachment_id=request.attachment_id,
            status=status,
            message=UserMessageSpec(
                action=Action.UPDATE_ATTACHMENT.id, detail=detail.id, request_id=request.request_id
            ),
        ),
        **common.control(f"attachment {status}"),
    )
    return ApplicationError(common.failure_message(error), type="DriverFailed", non_retryable=True)


@workflow.defn(name="ConnectAttachment")
class ConnectAttachment:
    @workflow.run
    async def run(self, request: AttachmentInput) -> dict[str, Any]:
        """Returns the connection info; fails (the API answers 500, as Cinder) if the driver
        cannot export the volume."""
        connection = await workflow.execute_activity_method(
            AttachmentActivities.load, request.attachment_id, **common.control("load attachment")
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
            raise await _failed(request, "error_attaching", Detail.ATTACH_ERROR, error) from None
        await workflow.execute_activity_method(
            AttachmentActivities.connected,
            Connected(attachment_id=request.attachment_id, connection_info=info),
            **common.control("record connection"),
        )
        return info


@workflow.defn(name="DisconnectAttachment")
class DisconnectAttachment:
    @workflow.run
    async def run(self, request: AttachmentInput) -> None:
        connection = await workflow.execute_activity_method(
            AttachmentActivities.load, request.attachment_id, **common.control("load attachment")
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
                    request, "error_detaching", Detail.DETACH_ERROR, error
                ) from None
        await workflow.execute_activity_method(
            AttachmentActivities.remove,
            request.attachment_id,
            **common.control("remove attachment"),
        )
