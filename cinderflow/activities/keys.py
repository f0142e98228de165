"""Control-queue steps for volume encryption keys (key manager calls are I/O: they live here).

A key is created (or cloned from the volume's source) before the driver creates the volume,
and recorded on the volume row by compare-and-swap; a retry finds it recorded. Two overlapping
attempts may both create one: the one that loses the compare-and-swap deletes its own key after
its transaction has ended (the key manager may write the same database, and on SQLite a second
write transaction would wait for the first for ever). A crash between creating a key and
recording it leaves an unused key in the store, never a volume without one.
"""

from __future__ import annotations

from collections.abc import Awaitable
from concurrent.futures import Executor
from typing import TypeVar

from castellan.common import exception
from sqlalchemy import delete as sa_delete
from sqlmodel import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from cinderflow.activities import fencing
from cinderflow.activities.group import ActivityGroup
from cinderflow.db import admin_metadata, ownership
from cinderflow.db import volumes as volume_db
from cinderflow.db.cas import compare_and_swap
from cinderflow.db.engine import Database
from cinderflow.db.models import Snapshot, UploadedImageKey, Volume, VolumeAdminMetadata
from cinderflow.drivers.base import VolumeRef
from cinderflow.keys.service import KeyService
from cinderflow.payloads import ClonedKeys, ImageKeyClone, MigrationKey, TransferKeys, VolumeKey
from cinderflow.threads import run_blocking

T = TypeVar("T")
KEY_REFUSED = "KeyManagerRefused"


class KeyActivities(ActivityGroup):
    def __init__(self, db: Database, keys: KeyService, executor: Executor | None = None) -> None:
        self.db = db
        self.keys = keys
        self.executor = executor

    @activity.defn(name="keys.ensure_volume_key")
    async def ensure_volume_key(self, volume_id: str) -> VolumeRef:
        """The volume, with its key if its type is encrypted (created or cloned now). A source
        key the manager does not have or will not give (an image's secret deleted, or
        another's) ends the step: no retry helps."""
        return await _key_refusals_final(
            volume_id,
            run_blocking(self.executor, self._ensure, volume_id, activity.info().workflow_id),
        )

    def _ensure(self, volume_id: str, workflow_id: str) -> VolumeRef:
        with self.db.read() as session:
            volume = fencing.owned(session, Volume, volume_id, workflow_id)
            spec = volume_db.encryption_spec(session, volume.volume_type_id)
            if spec is None or volume.encryption_key_id is not None:
                return volume_db.volume_ref(session, volume)
            source = self._source_key(session, volume)
        project = volume.project_id
        key_id = (
            self.keys.clone(source[0], source[1], to_project=project)
            if source
            else self.keys.create(project, spec)
        )
        with self.db.transaction() as session:
            recorded = compare_and_swap(
                session,
                Volume,
                volume_id,
                expected={"workflow_id": workflow_id, "encryption_key_id": None},
                values={"encryption_key_id": key_id},
            )
            volume = session.get(Volume, volume_id)
            ref = (
                volume_db.volume_ref(session, volume)
                if ownership.owns(volume, workflow_id)
                else None
            )
        if not recorded:  # an overlapping attempt recorded its own, or the volume was taken
            self.keys.delete(project, key_id)
        if ref is None:
            raise fencing.lost_ownership(volume_id, workflow_id)
        return ref

    @staticmethod
    def _source_key(session, volume: Volume) -> tuple[str, str] | None:
        """(project, key id) of the key the new volume's is cloned from: the source's own
        project, which is not the new volume's when an administrator clones another
        project's volume or snapshot."""
        image_key = volume_db.admin_metadata_of(session, volume.id).get(
            admin_metadata.SOURCE_IMAGE_KEY_ID
        )
        if image_key:
            return volume.project_id, image_key
        source: Snapshot | Volume | None = None
        if volume.snapshot_id:
            source = session.get(Snapshot, volume.snapshot_id)
        elif volume.source_volid:
            source = session.get(Volume, volume.source_volid)
        if source is None or source.encryption_key_id is None:
            return None
        return source.project_id, source.encryption_key_id

    @activity.defn(name="keys.delete_volume_key")
    async def delete_volume_key(self, volume: VolumeRef) -> None:
        """Delete a deleted volume's key (already gone is fine)."""
        if volume.encryption_key_id:
            await run_blocking(
                self.executor, self.keys.delete, volume.project_id, volume.encryption_key_id
            )

    @activity.defn(name="keys.create_migration_key")
    async def create_migration_key(self, request: MigrationKey) -> str:
        """A new key for a migration's destination (the new type's encryption), recorded in
        the volume's admin metadata (`migration_key_id`) so that a retry returns it; the
        migration's end removes the record, its undo deletes the key."""
        return await run_blocking(
            self.executor, self._create_migration_key, request, activity.info().workflow_id
        )

    def _create_migration_key(self, request: MigrationKey, workflow_id: str) -> str:
        with self.db.read() as session:
            volume = fencing.owned(session, Volume, request.volume_id, workflow_id)
            recorded = _migration_key(session, volume.id)
            if recorded:
                return recorded
            spec = volume_db.encryption_spec(session, request.new_type_id)
        assert spec is not None, "only an encrypted new type needs a key"
        key_id = self.keys.create(volume.project_id, spec)
        return self._keep_one(volume, workflow_id, admin_metadata.MIGRATION_KEY_ID, key_id)

    @activity.defn(name="keys.delete_key")
    async def delete_key(self, key: VolumeKey) -> None:
        """Delete a key nothing uses any more (a migration's old or abandoned key)."""
        await run_blocking(self.executor, self.keys.delete, key.project_id, key.key_id)

    @activity.defn(name="keys.delete_migration_key")
    async def delete_migration_key(self, volume_id: str) -> None:
        """Undo of create_migration_key: delete the key its record names (none recorded: none
        was made, or it is gone already) and the record."""
        await run_blocking(
            self.executor, self._delete_migration_key, volume_id, activity.info().workflow_id
        )

    def _delete_migration_key(self, volume_id: str, workflow_id: str) -> None:
        self._forget(volume_id, workflow_id, admin_metadata.MIGRATION_KEY_ID)

    @activity.defn(name="keys.remove_volume_key")
    async def remove_volume_key(self, volume_id: str) -> None:
        """Undo of ensure_volume_key for a create that is stopped: delete the key and unset it
        on the volume (nothing to do if it has none)."""
        await run_blocking(
            self.executor, self._remove_volume_key, volume_id, activity.info().workflow_id
        )

    def _remove_volume_key(self, volume_id: str, workflow_id: str) -> None:
        with self.db.read() as session:
            volume = fencing.owned(session, Volume, volume_id, workflow_id)
        if volume.encryption_key_id is None:
            return
        self.keys.delete(volume.project_id, volume.encryption_key_id)
        with self.db.transaction() as session:
            compare_and_swap(
                session,
                Volume,
                volume_id,
                expected={
                    "workflow_id": workflow_id,
                    "encryption_key_id": volume.encryption_key_id,
                },
                values={"encryption_key_id": None},
            )

    @activity.defn(name="keys.clone_for_image")
    async def clone_for_image(self, request: ImageKeyClone) -> str:
        """A clone of the volume's key for the image being uploaded from it, recorded in the
        volume's admin metadata (`upload_key:<image id>`) so that a retry returns it; the
        upload's end removes the record (the key is the image's then), its undo deletes it."""
        return await _key_refusals_final(
            request.volume_id,
            run_blocking(
                self.executor, self._clone_for_image, request, activity.info().workflow_id
            ),
        )

    def _clone_for_image(self, request: ImageKeyClone, workflow_id: str) -> str:
        record = admin_metadata.UPLOAD_KEY_PREFIX + request.image_id
        with self.db.read() as session:
            volume = fencing.owned(session, Volume, request.volume_id, workflow_id)
            recorded = volume_db.admin_metadata_of(session, volume.id).get(record)
        if recorded:
            return recorded
        assert volume.encryption_key_id, "only an encrypted volume's image gets a key"
        key_id = self.keys.clone(volume.project_id, volume.encryption_key_id)
        uploaded = UploadedImageKey(
            key_id=key_id,
            image_id=request.image_id,
            project_id=volume.project_id,
            image_project_id=request.image_project_id,
            volume_id=volume.id,
        )
        return self._keep_one(volume, workflow_id, record, key_id, also=uploaded)

    @activity.defn(name="keys.delete_image_key")
    async def delete_image_key(self, request: ImageKeyClone) -> None:
        """Undo of clone_for_image: delete the recorded clone, then the record."""
        await run_blocking(
            self.executor, self._delete_image_key, request, activity.info().workflow_id
        )

    def _delete_image_key(self, request: ImageKeyClone, workflow_id: str) -> None:
        self._forget(
            request.volume_id,
            workflow_id,
            admin_metadata.UPLOAD_KEY_PREFIX + request.image_id,
            also=UploadedImageKey,
        )

    def _keep_one(
        self,
        volume: Volume,
        workflow_id: str,
        record: str,
        key_id: str,
        also: UploadedImageKey | None = None,
    ) -> str:
        """Record the key just made under `record` in the volume's admin metadata (and add
        `also` in the same transaction), unless an overlapping attempt recorded its own
        first: then ours is deleted (after the transaction) and the recorded one returned."""
        with self.db.transaction() as session:
            fencing.owned(session, Volume, volume.id, workflow_id, lock=True)
            recorded = volume_db.admin_metadata_of(session, volume.id).get(record)
            if recorded is None:
                admin_metadata.put(session, volume.id, {record: key_id})
                if also is not None:
                    session.add(also)
        if recorded is not None:
            self.keys.delete(volume.project_id, key_id)
            return recorded
        return key_id

    def _forget(
        self,
        volume_id: str,
        workflow_id: str,
        record: str,
        also: type[UploadedImageKey] | None = None,
    ) -> None:
        """Undo of `_keep_one`: delete the key `record` names (none: none was made, or it is
        gone already), then the record (and its `also` row)."""
        with self.db.read() as session:
            volume = fencing.owned(session, Volume, volume_id, workflow_id)
            key_id = volume_db.admin_metadata_of(session, volume_id).get(record)
        if key_id is None:
            return
        self.keys.delete(volume.project_id, key_id)
        with self.db.transaction() as session:
            fencing.owned(session, Volume, volume_id, workflow_id, lock=True)
            admin_metadata.remove(session, volume_id, [record])
            if also is not None:
                session.exec(sa_delete(also).where(also.key_id == key_id))

    @activity.defn(name="keys.clone_for_transfer")
    async def clone_for_transfer(self, request: TransferKeys) -> ClonedKeys:
        """Clone the volume's key (and its snapshots') into the receiving project, each
        recorded in the volume's admin metadata (`transfer_key:<id>`) so a retry returns it.
        A key the manager does not have, or will not give, ends the step (no retry helps)."""
        return await _key_refusals_final(
            request.volume_id,
            run_blocking(
                self.executor, self._clone_for_transfer, request, activity.info().workflow_id
            ),
        )

    def _clone_for_transfer(self, request: TransferKeys, workflow_id: str) -> ClonedKeys:
        with self.db.read() as session:
            volume = fencing.owned(session, Volume, request.volume_id, workflow_id)
            wanted = {volume.id: volume.encryption_key_id} if volume.encryption_key_id else {}
            if request.snapshots:
                for snapshot in session.exec(
                    select(Snapshot).where(Snapshot.volume_id == volume.id)
                ):
                    if snapshot.encryption_key_id:
                        wanted[snapshot.id] = snapshot.encryption_key_id
            recorded = _transfer_keys(session, volume.id, request.to_project)
        cloned = dict(recorded)
        # one clone per key: snapshots share their volume's key, and so do their clones
        clone_of = {wanted[r]: k for r, k in recorded.items() if r in wanted}
        for resource_id, key_id in wanted.items():
            if resource_id in cloned:
                continue
            new = clone_of.get(key_id) or self.keys.clone(
                volume.project_id, key_id, to_project=request.to_project
            )
            with self.db.transaction() as session:
                fencing.owned(session, Volume, volume.id, workflow_id, lock=True)
                again = _transfer_keys(session, volume.id, request.to_project).get(resource_id)
                if again is None:
                    name = _record_prefix(request.to_project) + resource_id
                    admin_metadata.put(session, volume.id, {name: new})
            if again is not None:  # an overlapping attempt recorded its own
                if new not in clone_of.values():
                    self.keys.delete(request.to_project, new)
                new = again
            cloned[resource_id] = clone_of[key_id] = new
        return ClonedKeys(
            volume_key=cloned.get(volume.id),
            snapshot_keys={k: v for k, v in cloned.items() if k != volume.id},
            old_keys=sorted(set(wanted.values())),
            from_project=volume.project_id,
        )

    @activity.defn(name="keys.delete_transfer_keys")
    async def delete_transfer_keys(self, request: TransferKeys) -> None:
        """Undo of clone_for_transfer: delete the receiving project's clones it recorded."""
        await run_blocking(
            self.executor, self._delete_transfer_keys, request, activity.info().workflow_id
        )

    def _delete_transfer_keys(self, request: TransferKeys, workflow_id: str) -> None:
        with self.db.read() as session:
            fencing.owned(session, Volume, request.volume_id, workflow_id)
            recorded = _transfer_keys(session, request.volume_id, request.to_project)
        for key_id in set(recorded.values()):
            self.keys.delete(request.to_project, key_id)
        with self.db.transaction() as session:
            fencing.owned(session, Volume, request.volume_id, workflow_id, lock=True)
            names = [_record_prefix(request.to_project) + r for r in recorded]
            admin_metadata.remove(session, request.volume_id, names)


async def _key_refusals_final(volume_id: str, work: Awaitable[T]) -> T:
    """A key the manager does not have, or will not give, ends the step (no retry helps)."""
    try:
        return await work
    except (exception.ManagedObjectNotFoundError, exception.Forbidden) as refused:
        raise ApplicationError(
            f"the key manager refused a key of volume {volume_id}: {refused}",
            type=KEY_REFUSED,
            non_retryable=True,
        ) from None


def _record_prefix(to_project: str) -> str:
    """Clone records name the receiving project: a record another accept left (one stopped
    from outside) is never taken for this one's."""
    return f"{admin_metadata.TRANSFER_KEY_PREFIX}{to_project}:"


def _transfer_keys(session, volume_id: str, to_project: str) -> dict[str, str]:
    """Resource id -> the key cloned for it into `to_project` by a transfer being accepted."""
    prefix = _record_prefix(to_project)
    rows = session.exec(
        select(VolumeAdminMetadata).where(
            VolumeAdminMetadata.volume_id == volume_id,
            VolumeAdminMetadata.key.startswith(prefix),
        )
    )
    return {r.key.removeprefix(prefix): r.value for r in rows}


def _migration_key(session, volume_id: str) -> str | None:
    return volume_db.admin_metadata_of(session, volume_id).get(admin_metadata.MIGRATION_KEY_ID)
