"""Find and build the driver a backend is configured with."""

from __future__ import annotations

import importlib
import inspect

from cinderflow.drivers.base import Passphrases, VolumeDriver
from cinderflow.settings import BackendConfig

BUILTIN = {"file": "cinderflow.drivers.file:FileDriver"}


def load_driver(backend: BackendConfig, keys: Passphrases | None = None) -> VolumeDriver:
    """Instantiate a backend's driver: a builtin name or a `package.module:Class` path;
    `keys` gives it the passphrases of encrypted volumes."""
    module_name, _, class_name = BUILTIN.get(backend.driver, backend.driver).partition(":")
    if not class_name:
        raise ValueError(f"backend {backend.name}: unknown driver {backend.driver!r}")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, VolumeDriver)):
        raise ValueError(f"backend {backend.name}: {backend.driver!r} is not a VolumeDriver")
    if "keys" in inspect.signature(cls).parameters:
        return cls(backend.name, backend.options, keys)
    driver = cls(backend.name, backend.options)  # a driver written before keys were passed
    driver.keys = keys
    return driver
