"""Encryption providers as Cinder names them in volume type encryption specs."""

from __future__ import annotations

PROVIDERS = {
    "luks": "luks",
    "luks2": "luks2",
    "plain": "plain",
    "nova.volume.encryptors.luks.LuksEncryptor": "luks",
    "nova.volume.encryptors.cryptsetup.CryptsetupEncryptor": "plain",
    "os_brick.encryptors.luks.LuksEncryptor": "luks",
    "os_brick.encryptors.luks.Luks2Encryptor": "luks2",
    "os_brick.encryptors.cryptsetup.CryptsetupEncryptor": "plain",
}
"""Accepted provider values (short names or legacy class paths) and their short names."""


def short_name(provider: str) -> str:
    return PROVIDERS.get(provider, provider)
