"""Which resets tell the truth: the statuses an admin may set, and the ones refused, with why.

Cinder's reset-state writes whatever it is given. These tables refuse a reset that would
describe a state the volume (or snapshot) cannot be in, with a message that says what to do
instead. The API applies them; `cinderflow manage volume reset-state --force` bypasses them.
"""

from __future__ import annotations

from dataclasses import dataclass

from cinderflow.status import AttachStatus, MigrationStatus, SnapshotStatus, VolumeStatus

VOLUME_STATUSES = tuple(VolumeStatus)
"""Cinder's VolumeStatus.ALL, in its order (the 400 lists them)."""
ATTACH_STATUSES = (AttachStatus.ATTACHED, AttachStatus.DETACHED)
MIGRATION_STATUSES = tuple(MigrationStatus)
SNAPSHOT_STATUSES = tuple(SnapshotStatus)

SYSTEM_ONLY = (
    "only cinderflow sets {status} while an operation runs; reset to available, in-use or "
    "error instead"
)
VOLUME_REFUSED: dict[str, str] = {
    "deleting": "to delete the volume, delete it (`cinder delete`, or `cinder force-delete` "
    "when it is stuck) instead",
    "error_deleting": "only a failed delete leaves error_deleting; reset to error and delete "
    "the volume instead",
    "attaching": "attachment states follow the volume's attachments; create or complete an "
    "attachment instead",
    "detaching": "attachment states follow the volume's attachments; reset with "
    "--attach-status detached (or delete the attachment) instead",
    "reserved": "attachment states follow the volume's attachments; create an attachment "
    "instead",
    **{
        status: SYSTEM_ONLY.format(status=status)
        for status in (
            "creating", "extending", "retyping", "downloading", "uploading", "backing-up",
            "restoring-backup", "managing", "awaiting-transfer", "maintenance",
        )
    },
}  # fmt: skip
"""Target statuses an admin may not set, and what to do instead (docs/design.md shows them)."""

SNAPSHOT_REFUSED: dict[str, str] = {
    "deleting": "to delete the snapshot, delete it (`cinder snapshot-delete`, or "
    "`cinder snapshot-delete --force` when it is stuck) instead",
    "error_deleting": "only a failed delete leaves error_deleting; reset to error and delete "
    "the snapshot instead",
    "deleted": "a deleted snapshot has no row; delete the snapshot instead",
    **{
        status: f"only cinderflow sets {status} while an operation runs; reset to available "
        "or error instead"
        for status in ("creating", "updating", "unmanaging", "backing-up", "restoring")
    },
}

ATTACHED_STATES = frozenset(
    {VolumeStatus.IN_USE, VolumeStatus.ATTACHING, VolumeStatus.DETACHING, VolumeStatus.RESERVED}
)


class ResetRefused(Exception):
    """The reset would describe an impossible state; the message says what to do instead."""


@dataclass(frozen=True)
class VolumeReset:
    """A validated reset: lower-case values, None where not given."""

    status: str | None = None
    attach_status: str | None = None
    migration_status: str | None = None


def parse_volume_reset(
    status: str | None, attach_status: str | None, migration_status: str | None
) -> VolumeReset:
    """Cinder's validation (case-insensitive; unknown values list the valid ones)."""
    if status is None and attach_status is None and migration_status is None:
        raise ResetRefused(
            "Must specify 'status', 'attach_status' or 'migration_status' for update."
        )
    reset = VolumeReset(
        status=status.lower() if status is not None else None,
        attach_status=attach_status.lower() if attach_status is not None else None,
        migration_status=migration_status.lower() if migration_status is not None else None,
    )
    _valid("Volume status", reset.status, VOLUME_STATUSES)
    _valid("Volume attach status", reset.attach_status, ATTACH_STATUSES)
    _valid("Volume migration status", reset.migration_status, MIGRATION_STATUSES)
    return reset


def parse_snapshot_status(status: str) -> str:
    value = status.lower()
    _valid("Snapshot status", value, SNAPSHOT_STATUSES)
    return value


def _valid(what: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise ResetRefused(f"{what}: {value} is invalid, valid statuses are: {', '.join(allowed)}.")


def target_status(current: str, reset: VolumeReset) -> str:
    """The status the volume ends in: the one asked for; when only `detached` is asked for,
    an attached-looking status becomes `available` (what the attachments then imply)."""
    if reset.status is not None:
        return reset.status
    if reset.attach_status == AttachStatus.DETACHED and current in ATTACHED_STATES:
        return VolumeStatus.AVAILABLE
    return current


def check_volume_reset(current: str, reset: VolumeReset, attachment_ids: list[str]) -> None:
    """Refuse a reset whose result cannot be true of a volume with these attachments."""
    if reset.status in VOLUME_REFUSED:
        raise ResetRefused(f"Cannot reset-state to {reset.status}: {VOLUME_REFUSED[reset.status]}.")
    status = target_status(current, reset)
    detaching = reset.attach_status == AttachStatus.DETACHED
    if status == VolumeStatus.IN_USE and (not attachment_ids or detaching):
        raise ResetRefused(
            "Cannot reset-state to in-use because volume does not have any attachments."
            if not attachment_ids
            else "Cannot reset-state to in-use together with attach_status detached: a volume "
            "without attachments is not in use."
        )
    if reset.attach_status == AttachStatus.ATTACHED and not attachment_ids:
        raise ResetRefused(
            "Cannot reset attach_status to attached because volume does not have any "
            "attachments; attach it instead."
        )
    if status == VolumeStatus.AVAILABLE and attachment_ids and not detaching:
        raise ResetRefused(
            f"Cannot reset-state to available because attachments still exist: "
            f"{', '.join(attachment_ids)}. Add attach_status detached (cinder reset-state "
            "--attach-status detached) to terminate their connections and remove them too."
        )


def check_snapshot_reset(status: str) -> None:
    if status in SNAPSHOT_REFUSED:
        raise ResetRefused(f"Cannot reset-state to {status}: {SNAPSHOT_REFUSED[status]}.")
