"""One way to connect, for API, workers and tools: settings first, then temporalio envconfig
(`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, TLS/API-key variables, TOML profiles)."""

from __future__ import annotations

import logging

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.envconfig import ClientConfig

from cinderflow.settings import Settings
from cinderflow.temporal.converter import DATA_CONVERTER

DEFAULT_ADDRESS = "127.0.0.1:7233"
log = logging.getLogger(__name__)


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


async def warn_if_retention_outlives_records(client: Client, settings: Settings) -> None:
    """The operations API lists an operation from its record: if Temporal keeps workflows
    longer than cinderflow keeps records, an operator could find a workflow the API no
    longer shows. Say so at start (never fatal: describing may not be allowed)."""
    try:
        described = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=client.namespace)
        )
    except Exception:
        log.info("cannot read the namespace's retention; operation_retention is unchecked")
        return
    retention = described.config.workflow_execution_retention_ttl.ToTimedelta()
    if retention.total_seconds() > settings.operation_retention:
        log.warning(
            "Temporal namespace %s keeps workflows %s, longer than operation_retention (%.0f s):"
            " raise CINDERFLOW_OPERATION_RETENTION to at least %.0f",
            client.namespace,
            retention,
            settings.operation_retention,
            retention.total_seconds(),
        )
