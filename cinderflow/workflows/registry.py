"""Every operation cinderflow runs: its name, workflow, resource and how its summary reads.

A new operation is one entry here (plus its workflow module, its route and its tests): the API
hands resources over by name (api/handover.py), the worker registers `WORKFLOWS`, and workflow
type names are read from the classes, never written twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from temporalio.workflow import _Definition

from cinderflow.status import ResourceKind
from cinderflow.workflows.accept_transfer import AcceptTransfer
from cinderflow.workflows.attachments import ConnectAttachment, DisconnectAttachment
from cinderflow.workflows.create_snapshot import CreateSnapshot
from cinderflow.workflows.create_volume import CreateVolume
from cinderflow.workflows.delete_snapshot import DeleteSnapshot
from cinderflow.workflows.delete_volume import DeleteVolume
from cinderflow.workflows.extend_volume import ExtendVolume
from cinderflow.workflows.reset_volume import ResetVolume
from cinderflow.workflows.retype_volume import RetypeVolume
from cinderflow.workflows.upload_image import UploadVolumeToImage


@dataclass(frozen=True)
class Operation:
    name: str
    """The `Operation` search attribute and the middle of the workflow id."""
    workflow: type
    resource: ResourceKind
    summary: Callable[[Any, Any], str]
    """The workflow's static summary, from the resource's row and the operation's input."""
    shown_to_caller: bool = False
    """The operations API also shows it to the asking project (a transfer's receiver, whose
    volume it becomes), not only to the resource's own."""

    @property
    def workflow_type(self) -> str:
        """The workflow type name, as `@workflow.defn` registered it."""
        return _Definition.must_from_class(self.workflow).name


def _label(row: Any) -> str:
    return f"{row.name} ({row.id})" if getattr(row, "name", None) else row.id


def _volume(verb: str, detail: Callable[[Any, Any], str] = lambda row, request: "") -> Any:
    return lambda row, request: f"{verb} {row.size} GiB volume {_label(row)}{detail(row, request)}"


def _source(row: Any, request: BaseModel) -> str:
    image = getattr(request, "image", None)
    if image is not None:
        return f" from image {image.id}"
    if row.snapshot_id:
        return f" from snapshot {row.snapshot_id}"
    if row.source_volid:
        return f" from volume {row.source_volid}"
    return ""


def _extend(row: Any, request: Any) -> str:
    attached = " (attached)" if request.previous_status == "in-use" else ""
    return f" to {request.new_size} GiB{attached}"


def _retype(row: Any, request: Any) -> str:
    return f" to type {request.new_type_id} (migration {request.migration_policy})"


def _transfer(row: Any, request: Any) -> str:
    return f" to project {request.project_id} (transfer {request.transfer_id})"


def _migrate(row: Any, request: Any) -> str:
    return f" to {request.host}"


def _reset(row: Any, request: Any) -> str:
    attach = f", attach status {request.attach_status}" if request.attach_status else ""
    return f" to {request.status}{attach}"


def _image(row: Any, request: Any) -> str:
    return f" to image {request.image_id}"


def _snapshot(verb: str) -> Any:
    return lambda row, request: f"{verb} snapshot {_label(row)} of volume {row.volume_id}"


def _attachment(verb: str) -> Any:
    def summary(row: Any, request: Any) -> str:
        host = (row.connector or {}).get("host", "?")
        return f"{verb} volume {row.volume_id} for {host} ({row.id})"

    return summary


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("create", CreateVolume, ResourceKind.VOLUME, _volume("create", _source)),
        Operation("delete", DeleteVolume, ResourceKind.VOLUME, _volume("delete")),
        Operation("extend", ExtendVolume, ResourceKind.VOLUME, _volume("extend", _extend)),
        Operation("retype", RetypeVolume, ResourceKind.VOLUME, _volume("retype", _retype)),
        Operation("migrate", RetypeVolume, ResourceKind.VOLUME, _volume("migrate", _migrate)),
        Operation(
            "accept_transfer",
            AcceptTransfer,
            ResourceKind.VOLUME,
            _volume("transfer", _transfer),
            shown_to_caller=True,
        ),
        Operation(
            "upload_image",
            UploadVolumeToImage,
            ResourceKind.VOLUME,
            _volume("upload", _image),
        ),
        Operation("reset", ResetVolume, ResourceKind.VOLUME, _volume("reset", _reset)),
        Operation("create_snapshot", CreateSnapshot, ResourceKind.SNAPSHOT, _snapshot("create")),
        Operation("delete_snapshot", DeleteSnapshot, ResourceKind.SNAPSHOT, _snapshot("delete")),
        Operation("attach", ConnectAttachment, ResourceKind.ATTACHMENT, _attachment("attach")),
        Operation("detach", DisconnectAttachment, ResourceKind.ATTACHMENT, _attachment("detach")),
    )
}

WORKFLOWS = list(dict.fromkeys(op.workflow for op in OPERATIONS.values()))
"""Every workflow a control worker runs (retype and migrate share one)."""
