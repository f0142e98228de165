"""Temporal in production: TLS, mTLS and API keys come from temporalio's envconfig, and the
address and namespace settings win over it."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from cinderflow.settings import Settings
from cinderflow.temporal.client import connect_config


def test_tls_mtls_and_api_key_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, data in (("ca.pem", b"CA"), ("client.pem", b"CERT"), ("client.key", b"KEY")):
        (tmp_path / name).write_bytes(data)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.internal:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "from-env")
    monkeypatch.setenv("TEMPORAL_API_KEY", "an-api-key")
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(tmp_path / "ca.pem"))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(tmp_path / "client.pem"))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(tmp_path / "client.key"))
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_NAME", "temporal.internal")

    config = connect_config(Settings(data_dir=tmp_path, temporal_namespace="cinder"))
    assert config["target_host"] == "temporal.internal:7233"
    assert config["namespace"] == "cinder"  # the setting wins
    assert config["api_key"] == "an-api-key"
    tls = config["tls"]
    assert isinstance(tls, TLSConfig)
    assert (tls.server_root_ca_cert, tls.client_cert, tls.client_private_key) == (
        b"CA",
        b"CERT",
        b"KEY",
    )
    assert tls.domain == "temporal.internal"


def test_loopback_without_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_API_KEY", "TEMPORAL_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "none.toml"))
    config = connect_config(Settings(data_dir=tmp_path))
    assert config["target_host"] == "127.0.0.1:7233"
    assert "api_key" not in config or config["api_key"] is None
