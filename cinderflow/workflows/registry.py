"""Every workflow a control worker runs."""

from cinderflow.workflows.attachments import ConnectAttachment, DisconnectAttachment
from cinderflow.workflows.create_snapshot import CreateSnapshot
from cinderflow.workflows.create_volume import CreateVolume
from cinderflow.workflows.delete_snapshot import DeleteSnapshot
from cinderflow.workflows.delete_volume import DeleteVolume
from cinderflow.workflows.extend_volume import ExtendVolume
from cinderflow.workflows.reset_volume import ResetVolume

WORKFLOWS = [
    CreateVolume,
    DeleteVolume,
    CreateSnapshot,
    DeleteSnapshot,
    ConnectAttachment,
    DisconnectAttachment,
    ExtendVolume,
    ResetVolume,
]
