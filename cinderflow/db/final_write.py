"""The one write that ends an operation: status and field changes (or removal), reservations,
admin metadata, holds, owned snapshots, a reset's attachments, the user message, and the
release of ownership (db/ownership.py, compare-and-swap), all in the caller's transaction.

Every way an operation ends goes through `apply`: its normal end, its failure, a reset that
took it over, and the operator's `cinderflow manage volume reset-state` (unfenced: it writes
whoever owns the row, after terminating the owner). One path, so no end can forget to release a
reservation or leave a snapshot owned by a workflow that has gone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete as sa_delete
from sqlalchemy import update as sa_update
from sqlmodel import Session, SQLModel, select

from cinderflow import quota, user_messages
from cinderflow.db import admin_metadata, migration_targets, operation_records, ownership
from cinderflow.db import attachments as attachment_db
from cinderflow.db import transfers as transfer_db
from cinderflow.db.cas import compare_and_swap
from cinderflow.db.models import Snapshot, Transfer, Volume, VolumeAdminMetadata, utcnow
from cinderflow.payloads import FinalWrite, TransferAccept
from cinderflow.status import (
    MigrationStatus,
    OperationStatus,
    ResourceKind,
    SnapshotStatus,
    VolumeStatus,
)
from cinderflow.temporal.outbox import operation_of

MODELS: dict[ResourceKind, type[SQLModel]] = {
    ResourceKind.VOLUME: Volume,
    ResourceKind.SNAPSHOT: Snapshot,
}
FIELDS: dict[ResourceKind, frozenset[str]] = {
    ResourceKind.VOLUME: frozenset(
        {
            "provider_location",
            "provider_id",
            "size",
            "host",
            "migration_status",
            "volume_type_id",
            "name_id",
            "encryption_key_id",
            "multiattach",
            "bootable",
            "project_id",
            "user_id",
        }
    ),
    ResourceKind.SNAPSHOT: frozenset({"provider_location", "progress"}),
}
"""Fields a final write may change besides the status (a driver's model update, a new size, a
retype's new type and a migration's new backend object)."""
ERROR_STATUS = {
    ResourceKind.VOLUME: VolumeStatus.ERROR,
    ResourceKind.SNAPSHOT: SnapshotStatus.ERROR,
}


class NotOwner(Exception):
    """The row belongs to another workflow now: this operation must end without writing."""


def apply(
    session: Session,
    write: FinalWrite,
    workflow_id: str | None,
    *,
    message_ttl: float,
    fenced: bool = True,
) -> bool:
    """End the operation of `workflow_id` on `write.resource_id`; False if it had already
    ended so (a retry after commit). Fenced: NotOwner unless `workflow_id` owns the row.
    Unfenced (the operator): the row's current owner, if any, is ended instead."""
    model = MODELS[write.resource]
    row: Any = session.get(model, write.resource_id, with_for_update=True)
    if fenced:
        if row is None and write.remove:
            return False  # removed by an earlier attempt of this step
        if row is None or row.workflow_id != workflow_id:
            if _already_written(row, write, workflow_id):
                return False  # released by an earlier attempt of this step
            raise NotOwner(
                f"{write.resource_id} is no longer owned by this {operation_of(workflow_id)} "
                "operation"
            )
    elif row is None:
        raise NotOwner(f"{write.resource} {write.resource_id} does not exist")
    owner: str | None = row.workflow_id
    if owner is not None and not write.part:
        _release_owned_snapshots(session, owner, write)
        ownership.release_holds(session, owner)
        told = (
            user_messages.user_message(write.message.action, write.message.detail)
            if write.message
            else None
        )
        operation_records.end(
            session, owner, outcome(write, fenced), write.reason, told, overrule=not fenced
        )
    if write.resource == ResourceKind.VOLUME:
        quota.release(session, row.id)
        admin_metadata.remove(session, row.id, write.admin_metadata)
        attachment_db.reset(session, row, write.attach_status)
    if write.message is not None:
        _record_message(session, row, write, owner or workflow_id or "manage", message_ttl)
    if write.remove:
        if write.resource == ResourceKind.VOLUME:
            transfer_db.retire(session, row.id)
        removed = ownership.remove(session, model, row.id, workflow_id=owner)
        assert removed, "the row is locked and its owner was checked above"
        return True
    values = {k: v for k, v in write.values.items() if k in FIELDS[write.resource]}
    if write.migration_status is not None:
        values["migration_status"] = (
            None if write.migration_status == MigrationStatus.NONE else write.migration_status
        )
    if write.transfer is not None:
        _accept_transfer(session, row.id, write.transfer)
    if write.exchange_with is not None:
        assert owner is not None, "only a migration exchanges"
        migration_targets.exchange(session, row, write.exchange_with, owner, write.exchange_server)
    if "volume_type_id" in values and write.resource == ResourceKind.VOLUME:
        _retype_snapshots(session, row, values["volume_type_id"])
    status = write.status
    if write.previous:
        status = row.previous_status or ERROR_STATUS[write.resource]
    elif status is None:  # what the attachments imply (an online extend ends in-use)
        status, values["attach_status"] = attachment_db.statuses(
            attachment_db.live(session, row.id)
        )
    changes = {**values, "status": status, "previous_status": None}
    if owner is not None:
        released = ownership.release(session, model, row.id, workflow_id=owner, values=changes)
    else:  # the operator, on a row nobody owns
        released = compare_and_swap(
            session, model, row.id, expected={"workflow_id": None}, values=changes
        )
    assert released, "the row is locked and its owner was checked above"
    return True


def outcome(write: FinalWrite, fenced: bool) -> str:
    """How the operation the write ends went, for its record: the operator's (unfenced)
    write over a running operation is a reset."""
    if not fenced:
        return OperationStatus.RESET
    if write.outcome:
        return write.outcome
    return OperationStatus.FAILED if write.message else OperationStatus.SUCCEEDED


def _accept_transfer(session: Session, volume_id: str, accept: TransferAccept) -> None:
    """The volume's snapshots follow it to the receiving project (unless left behind), with
    their keys cloned there; the transfer is accepted (and leaves the lists)."""
    if accept.move_snapshots:
        for snapshot in session.exec(select(Snapshot).where(Snapshot.volume_id == volume_id)):
            snapshot.project_id, snapshot.user_id = accept.project_id, accept.user_id
            if snapshot.id in accept.snapshot_keys:
                snapshot.encryption_key_id = accept.snapshot_keys[snapshot.id]
            session.add(snapshot)
    session.exec(
        sa_delete(VolumeAdminMetadata).where(
            VolumeAdminMetadata.volume_id == volume_id,
            VolumeAdminMetadata.key.startswith(admin_metadata.TRANSFER_KEY_PREFIX),
        )
    )
    transfer = session.get(Transfer, accept.transfer_id, with_for_update=True)
    if transfer is not None:
        transfer.accepted, transfer.deleted = True, True
        transfer.destination_project_id = accept.project_id
        transfer.deleted_at = transfer.updated_at = utcnow()
        session.add(transfer)
    session.flush()


def _retype_snapshots(session: Session, volume: Volume, volume_type_id: str) -> None:
    """A volume's snapshots have its type (Cinder forgot them, LP#1877164): their counted
    quota usage moves with them. Snapshots a transfer left in another project keep theirs
    (that project's quota is not the retype's)."""
    session.exec(
        sa_update(Snapshot)
        .where(Snapshot.volume_id == volume.id, Snapshot.project_id == volume.project_id)
        .values(volume_type_id=volume_type_id)
    )


def _already_written(row: Any, write: FinalWrite, workflow_id: str | None) -> bool:
    """The row was last released by this workflow (with this status, where the write names
    one): a retry of a final write that committed. A removal is written only when the row
    is gone."""
    return (
        not write.remove
        and row is not None
        and row.workflow_id is None
        and row.last_workflow_id == workflow_id
        and (write.status is None or write.previous or row.status == write.status)
    )


def _release_owned_snapshots(session: Session, owner: str, write: FinalWrite) -> None:
    """Snapshots the operation took (a cascading delete) and did not finish: each returns to
    the status the write names, else to the status it had before the operation."""
    owned = session.exec(
        select(Snapshot).where(Snapshot.workflow_id == owner, Snapshot.id != write.resource_id)
    )
    for snapshot in owned.all():
        status = write.snapshots.get(snapshot.id, snapshot.previous_status or SnapshotStatus.ERROR)
        ownership.release(
            session,
            Snapshot,
            snapshot.id,
            workflow_id=owner,
            values={"status": status, "previous_status": None},
        )


def _record_message(
    session: Session, row: Any, write: FinalWrite, workflow_id: str, ttl: float
) -> None:
    assert write.message is not None
    user_messages.record_spec(
        session,
        write.message,
        message_id=user_messages.message_id_for(workflow_id, f"finish-{write.resource_id}"),
        project_id=write.message.project_id or row.project_id,
        resource_uuid=row.id,
        ttl=ttl,
    )
