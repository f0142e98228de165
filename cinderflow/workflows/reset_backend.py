"""The backend half of a reset, shared by the ResetVolume workflow and by every operation that
takes a reset while it runs: the driver is asked before the database is written.

It terminates the connections a reset to `detached` removes and asks the driver to make the
backend match (`reset_state`, when the driver implements it). Its failure refuses the reset
unless the administrator forced it. Snapshots have nothing on the backend to change.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from cinderflow.activities.driver import DriverActivities
    from cinderflow.activities.volumes import VolumeActivities
    from cinderflow.payloads import DriverReset, ResetRequest
    from cinderflow.status import AttachStatus, ResourceKind
    from cinderflow.workflows import common


async def backend_reset(request: ResetRequest) -> str | None:
    """Make the backend match the reset; the driver's error, or None."""
    if request.resource != ResourceKind.VOLUME:
        return None
    volume = await common.run_control(VolumeActivities.load, request.resource_id, "load volume")
    if volume.host is None:
        return None  # never placed on a backend: nothing there to change
    failures: list[str] = []
    options = common.driver(volume.host, request.policy)
    if request.attach_status == AttachStatus.DETACHED:
        connections = await common.run_control(
            VolumeActivities.connections, request.resource_id, "attachments"
        )
        for connection in connections:
            if not connection.connector:
                continue  # reserved, never connected: no export to end
            try:
                await workflow.execute_activity_method(
                    DriverActivities.terminate_connection,
                    connection,
                    **{**options, "summary": f"terminate connection {connection.attachment_id}"},
                )
            except ActivityError as error:
                failures.append(
                    f"terminate_connection of attachment {connection.attachment_id}: "
                    f"{common.failure_message(error)}"
                )
    try:
        await workflow.execute_activity_method(
            DriverActivities.reset_state,
            DriverReset(volume=volume, status=request.status, attach_status=request.attach_status),
            **{**options, "summary": f"driver reset_state to {request.status}"},
        )
    except ActivityError as error:
        failures.append(f"reset_state: {common.failure_message(error)}")
    return "; ".join(failures) or None


def forced_reason(failure: str | None) -> str:
    return f"reset by an administrator despite the driver: {failure}" if failure else "reset"
