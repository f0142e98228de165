"""Transfer auth keys: random, shown once, stored only as a salted HMAC, compared in constant time.

Cinder makes a 16-hex-character key and stores `hmac(salt, key, sha1)`; cinderflow keeps the key's
shape (clients and people copy it around) and hashes with SHA-256. The key itself is never
stored, logged or put in a workflow's input.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_LENGTH = 16
"""Cinder's `volume_transfer_key_length`."""
SALT_LENGTH = 8


@dataclass(frozen=True)
class NewKey:
    auth_key: str
    salt: str
    crypt_hash: str


def new_key() -> NewKey:
    auth_key = secrets.token_hex(KEY_LENGTH // 2)
    salt = secrets.token_hex(SALT_LENGTH // 2)
    return NewKey(auth_key, salt, digest(salt, auth_key))


def digest(salt: str, auth_key: str) -> str:
    key = auth_key.encode("utf-8", "surrogatepass")  # any JSON string, never an error
    return hmac.new(salt.encode(), key, hashlib.sha256).hexdigest()


def matches(salt: str, crypt_hash: str, auth_key: str) -> bool:
    """Whether `auth_key` is the transfer's key (constant time)."""
    return hmac.compare_digest(digest(salt, auth_key), crypt_hash)
