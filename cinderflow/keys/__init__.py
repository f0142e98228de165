"""Encryption keys: castellan's KeyManager interface, with a local store as the embedded
default (production can point castellan at Barbican or Vault instead)."""
