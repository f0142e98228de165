"""One way to connect, for API, workers and tools: settings first, then temporalio envconfig
(`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, TLS/API-key variables, TOML profiles)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.envconfig import ClientConfig

from cinderflow.settings import Settings
from cinderflow.temporal.converter import DATA_CONVERTER

DEFAULT_ADDRESS = "127.0.0.1:7233"


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    config = ClientConfig.load_client_connect_config()
    if settings.temporal_address:
        config["target_host"] = settings.temporal_address
    if settings.temporal_namespace:
        config["namespace"] = settings.temporal_namespace
    config.setdefault("target_host", DEFAULT_ADDRESS)
    return await Client.connect(**config, data_converter=DATA_CONVERTER, lazy=lazy)
