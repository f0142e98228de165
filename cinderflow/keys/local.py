"""A castellan KeyManager that keeps secrets in cinderflow's database, sealed.

Each secret is sealed with AES-256-GCM under a 256-bit master key kept in a separate file
(mode 0600, refused if group- or world-readable). The associated data binds a row to its id,
project and type, so rows cannot be swapped between projects. Objects are scoped to the
context's project: other projects get ManagedObjectNotFoundError, as castellan specifies.

What it protects: key material in database files and backups, as long as the master key file
is kept and backed up separately. What it does not: root on the host (neither does Barbican's
simple_crypto or a Vault whose unseal key sits on the same disk). Losing the master key loses
every encrypted volume.
"""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import Any

from castellan.common import exception
from castellan.common.objects import (
    managed_object,
    opaque_data,
    passphrase,
    private_key,
    public_key,
    symmetric_key,
    x_509,
)
from castellan.key_manager.key_manager import KeyManager
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlmodel import select

from cinderflow.db.engine import Database
from cinderflow.db.models import KeyRecord
from cinderflow.files import secret_file

TYPES: dict[str, type[managed_object.ManagedObject]] = {
    "symmetric": symmetric_key.SymmetricKey,
    "passphrase": passphrase.Passphrase,
    "opaque": opaque_data.OpaqueData,
    "private": private_key.PrivateKey,
    "public": public_key.PublicKey,
    "certificate": x_509.X509,
}
WITH_ALGORITHM = ("symmetric", "private", "public")


def load_master_key(path: Path) -> bytes:
    """The 32-byte master key, created on first use; refuse a file others can read."""
    return secret_file(path, "master key")


def _project(context: Any) -> str:
    project = getattr(context, "project_id", None)
    if not project:
        raise exception.Forbidden("a context with a project is required")
    return project


class LocalKeyManager(KeyManager):
    def __init__(self, db: Database, master_key_file: Path) -> None:
        self.db = db
        self.aead = AESGCM(load_master_key(master_key_file))

    @staticmethod
    def _aad(ident: str, project: str, object_type: str) -> bytes:
        return f"{ident}|{project}|{object_type}".encode()

    def _save(self, context: Any, obj: managed_object.ManagedObject, name: str | None) -> str:
        project, ident = _project(context), str(uuid.uuid4())
        object_type = obj.managed_type()
        nonce = secrets.token_bytes(12)
        with self.db.transaction() as session:
            session.add(
                KeyRecord(
                    id=ident,
                    project_id=project,
                    object_type=object_type,
                    algorithm=getattr(obj, "algorithm", None),
                    bit_length=getattr(obj, "bit_length", None),
                    name=name or obj.name,
                    nonce=nonce,
                    sealed=self.aead.encrypt(
                        nonce, obj.get_encoded(), self._aad(ident, project, object_type)
                    ),
                )
            )
        return ident

    def _record(self, context: Any, ident: str) -> KeyRecord:
        with self.db.read() as session:
            row = session.get(KeyRecord, ident)
        if row is None or row.project_id != _project(context):
            raise exception.ManagedObjectNotFoundError(uuid=ident)
        return row

    def _object(self, row: KeyRecord, *, metadata_only: bool) -> managed_object.ManagedObject:
        secret = None
        if not metadata_only:
            secret = self.aead.decrypt(
                row.nonce, row.sealed, self._aad(row.id, row.project_id, row.object_type)
            )
        cls = TYPES[row.object_type]
        if row.object_type in WITH_ALGORITHM:
            return cls(row.algorithm, row.bit_length, secret, name=row.name, id=row.id)  # type: ignore[call-arg]
        return cls(secret, name=row.name, id=row.id)  # type: ignore[call-arg]

    # castellan's KeyManager --------------------------------------------------------------

    def create_key(
        self,
        context: Any,
        algorithm: str,
        length: int,
        expiration: str | None = None,
        name: str | None = None,
    ) -> str:
        key = symmetric_key.SymmetricKey(algorithm, length, secrets.token_bytes(length // 8))
        return self._save(context, key, name)

    def create_key_pair(
        self,
        context: Any,
        algorithm: str,
        length: int,
        expiration: str | None = None,
        name: str | None = None,
    ) -> tuple[str, str]:
        raise NotImplementedError("the local key manager stores key pairs but does not make them")

    def store(self, context: Any, managed_object: Any, expiration: str | None = None) -> str:
        return self._save(context, managed_object, None)

    def get(self, context: Any, managed_object_id: str, metadata_only: bool = False) -> Any:
        return self._object(self._record(context, managed_object_id), metadata_only=metadata_only)

    def delete(self, context: Any, managed_object_id: str, force: bool = False) -> None:
        """A hard delete; ManagedObjectNotFoundError if it is not there (as Barbican)."""
        self._record(context, managed_object_id)
        with self.db.transaction() as session:
            row = session.get(KeyRecord, managed_object_id)
            if row is not None:
                session.delete(row)

    def list(self, context: Any, object_type: Any = None, metadata_only: bool = False) -> list:
        with self.db.read() as session:
            rows = session.exec(select(KeyRecord).where(KeyRecord.project_id == _project(context)))
            found = [self._object(row, metadata_only=metadata_only) for row in rows]
        return [o for o in found if object_type is None or isinstance(o, object_type)]

    def add_consumer(self, context: Any, managed_object_id: str, consumer_data: dict) -> None:
        self._record(context, managed_object_id)

    def remove_consumer(self, context: Any, managed_object_id: str, consumer_data: dict) -> None:
        self._record(context, managed_object_id)
