"""The local key manager (castellan's interface) and the volume key service."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from castellan.common import exception
from castellan.common.objects import passphrase, symmetric_key
from cryptography.exceptions import InvalidTag

from cinderflow.db.engine import Database
from cinderflow.drivers.base import EncryptionSpec
from cinderflow.keys.local import LocalKeyManager
from cinderflow.keys.service import KeyService, ProjectContext
from tests.conftest import Databases

ALICE, BOB = ProjectContext("alice"), ProjectContext("bob")


@pytest.fixture
def db(databases: Databases) -> Database:
    return Database(databases.new("sqlite"))


@pytest.fixture
def manager(db: Database, tmp_path: Path) -> LocalKeyManager:
    return LocalKeyManager(db, tmp_path / "master.key")


def test_create_get_list_delete(manager: LocalKeyManager, tmp_path: Path) -> None:
    key_id = manager.create_key(ALICE, algorithm="aes", length=256)
    key = manager.get(ALICE, key_id)
    assert (key.algorithm, key.bit_length, len(key.get_encoded())) == ("aes", 256, 32)
    assert manager.get(ALICE, key_id, metadata_only=True).get_encoded() is None
    assert [k.id for k in manager.list(ALICE)] == [key_id]
    manager.delete(ALICE, key_id)
    with pytest.raises(exception.ManagedObjectNotFoundError):
        manager.get(ALICE, key_id)
    assert os.stat(tmp_path / "master.key").st_mode & 0o777 == 0o600


def test_projects_are_isolated(manager: LocalKeyManager) -> None:
    key_id = manager.store(ALICE, passphrase.Passphrase(b"correct horse"))
    for call in (lambda: manager.get(BOB, key_id), lambda: manager.delete(BOB, key_id)):
        with pytest.raises(exception.ManagedObjectNotFoundError):
            call()
    assert manager.list(BOB) == []
    with pytest.raises(exception.Forbidden):
        manager.get(ProjectContext(""), key_id)


def test_secrets_are_sealed_at_rest(db: Database, manager: LocalKeyManager, databases) -> None:
    material = b"0123456789abcdef-very-secret-key"
    manager.store(ALICE, symmetric_key.SymmetricKey("aes", 256, material))
    db_file = Path(db.url.removeprefix("sqlite:///"))
    raw = b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
    assert material not in raw


def test_another_master_key_cannot_open_them(db: Database, tmp_path: Path) -> None:
    key_id = LocalKeyManager(db, tmp_path / "one.key").create_key(ALICE, "aes", 256)
    with pytest.raises(InvalidTag):
        LocalKeyManager(db, tmp_path / "other.key").get(ALICE, key_id)


def test_a_readable_master_key_is_refused(db: Database, tmp_path: Path) -> None:
    LocalKeyManager(db, tmp_path / "master.key")
    os.chmod(tmp_path / "master.key", 0o644)
    with pytest.raises(PermissionError, match="must not be readable"):
        LocalKeyManager(db, tmp_path / "master.key")


def test_key_service(manager: LocalKeyManager) -> None:
    keys = KeyService(manager)
    original = keys.create(
        "alice", EncryptionSpec(provider="luks", cipher="aes-xts-plain64", key_size=512)
    )
    assert manager.get(ALICE, original).bit_length == 512
    clone = keys.clone("alice", original)
    moved = keys.clone("alice", original, to_project="bob")
    assert clone != original
    assert keys.passphrase("alice", clone) == keys.passphrase("alice", original)
    assert keys.passphrase("bob", moved) == keys.passphrase("alice", original)
    assert len(keys.passphrase("alice", original)) == 128  # hex of 64 bytes
    stored = manager.store(ALICE, passphrase.Passphrase(b"as typed"))
    assert keys.passphrase("alice", stored) == b"as typed"
    keys.delete("alice", clone)
    keys.delete("alice", clone)  # already gone: fine
    assert not keys.exists("alice", clone) and keys.exists("alice", original)
