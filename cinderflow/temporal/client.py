"""One way to connect, for API, workers and tools: settings first, then temporalio envconfig
(`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, TLS/API-key variables, TOML profiles)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.envconfig import ClientConfig

from cinderflow.settings import Settings
from cinderflow.temporal.converter import DATA_CONVERTER

DEFAULT_ADDRESS = "127.0.0.1:7233"


def connect_config(settings: Settings) -> dict:
    """Client.connect's arguments: temporalio envconfig (TLS, mTLS, API key, gRPC metadata,
    profiles; docs/configuration.md "Temporal in production"), then the address and namespace
    settings over it."""
    config = dict(ClientConfig.load_client_connect_config())
    if settings.temporal_address:
        config["target_host"] = settings.temporal_address
    if settings.temporal_namespace:
        config["namespace"] = settings.temporal_namespace
    config.setdefault("target_host", DEFAULT_ADDRESS)
    return config


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    return await Client.connect(
        **connect_config(settings), data_converter=DATA_CONVERTER, lazy=lazy
    )
