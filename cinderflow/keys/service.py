"""Volume keys, as Cinder handles them: one symmetric key per encrypted volume, cloned (same
material, new id) for snapshots' copies and clones, deleted with the volume.

One service over castellan for every key cinderflow handles (volumes, snapshots, clones,
transfers, images), whichever key manager holds them: `local` (cinderflow's own, sealed in its
database), `vault` (Vault or OpenBao, castellan's VaultKeyManager) or `barbican`. A secret's
type is kept through a clone (castellan `store(get(id))`), so an image's `passphrase` secret
stays a passphrase in the volume's key."""

from __future__ import annotations

import binascii
import contextlib
from dataclasses import dataclass
from pathlib import Path

from castellan.common import exception
from castellan.key_manager.key_manager import KeyManager
from pydantic import SecretStr

from cinderflow.db.engine import Database
from cinderflow.drivers.base import EncryptionSpec
from cinderflow.keys.local import LocalKeyManager
from cinderflow.settings import Settings


@dataclass(frozen=True)
class ProjectContext:
    """The castellan context: keys belong to the volume's project."""

    project_id: str


class KeyService:
    def __init__(self, manager: KeyManager) -> None:
        self.manager = manager

    def create(self, project_id: str, spec: EncryptionSpec) -> str:
        """A new key for a volume of an encrypted type (Cinder: algorithm from the cipher,
        length from key_size)."""
        algorithm = (spec.cipher or "aes").split("-")[0]
        return self.manager.create_key(
            ProjectContext(project_id), algorithm=algorithm, length=spec.key_size or 256
        )

    def clone(self, project_id: str, key_id: str, to_project: str | None = None) -> str:
        """The same key material under a new id (Cinder's clone_encryption_key)."""
        secret = self.manager.get(ProjectContext(project_id), key_id)
        return self.manager.store(ProjectContext(to_project or project_id), secret)

    def delete(self, project_id: str, key_id: str) -> None:
        """Delete; an already deleted key is fine (retries)."""
        with contextlib.suppress(exception.ManagedObjectNotFoundError):
            self.manager.delete(ProjectContext(project_id), key_id)

    def passphrase(self, project_id: str, key_id: str) -> bytes:
        """The LUKS passphrase of a key, as os-brick's get_passphrase_from_secret: a stored
        passphrase as is, any other secret hex-encoded (Cinder's historical convention)."""
        secret = self.manager.get(ProjectContext(project_id), key_id)
        encoded = secret.get_encoded()
        if secret.managed_type() == "passphrase":
            return encoded
        return binascii.hexlify(encoded)

    def exists(self, project_id: str, key_id: str) -> bool:
        try:
            self.manager.get(ProjectContext(project_id), key_id, metadata_only=True)
        except exception.ManagedObjectNotFoundError:
            return False
        return True


def master_key_file(settings: Settings) -> Path:
    return settings.master_key_file or settings.data_dir / "master.key"


def key_service(settings: Settings, db: Database) -> KeyService:
    """The configured key manager (`key_manager`; the embedded default is `local`)."""
    if settings.key_manager == "local":
        return KeyService(LocalKeyManager(db, master_key_file(settings)))
    if settings.key_manager == "barbican" and settings.auth_strategy != "keystone":
        raise ValueError(
            "key_manager barbican needs Keystone authentication (auth_strategy keystone): "
            "Barbican takes a token for each call"
        )
    return KeyService(castellan_manager(settings))


def castellan_manager(settings: Settings) -> KeyManager:
    """castellan's own backend for `vault` or `barbican`, configured from cinderflow's
    settings (an oslo.config object of its own: nothing is read from files or argv)."""
    from castellan import key_manager, options
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    conf([], project="cinderflow", default_config_files=[], default_config_dirs=[])
    if settings.key_manager == "vault":
        if not settings.vault_url:
            raise ValueError("key_manager vault needs vault_url (CINDERFLOW_VAULT_URL)")
        options.set_defaults(
            conf,
            backend="vault",
            vault_url=settings.vault_url,
            vault_root_token_id=_secret(settings.vault_token),
            vault_approle_role_id=settings.vault_approle_role_id,
            vault_approle_secret_id=_secret(settings.vault_approle_secret_id),
            vault_kv_mountpoint=settings.vault_mount,
            vault_kv_version=settings.vault_kv_version,
            vault_namespace=settings.vault_namespace,
        )
    else:
        options.set_defaults(
            conf,
            backend="barbican",
            barbican_endpoint=settings.barbican_endpoint,
            auth_endpoint=settings.barbican_auth_endpoint,
        )
    return key_manager.API(conf)


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
