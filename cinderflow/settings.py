"""Process settings: `CINDERFLOW_*` environment variables, an optional TOML file, CLI overrides.

Precedence, highest first: explicit overrides (CLI flags) > environment > TOML file > defaults.
The TOML file is named by `--config` or `CINDERFLOW_CONFIG`. Nested values in the environment
are JSON, e.g. `CINDERFLOW_BACKENDS='[{"name": "fast", "options": {"path": "/srv"}}]'`.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def default_data_dir() -> Path:
    """`$XDG_DATA_HOME/cinderflow`, else `~/.local/share/cinderflow`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cinderflow"


class BackendConfig(BaseModel):
    """One storage backend served by a worker: `<host>@<name>` with its own task queue."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    driver: str = "file"
    options: dict[str, Any] = Field(default_factory=dict)
    availability_zone: str | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CINDERFLOW_", extra="ignore", toml_file=None)

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    """SQLAlchemy URL; default: a SQLite file in `data_dir`."""

    host: str = Field(default_factory=socket.gethostname)
    """Volume-service host name; backends are `<host>@<backend name>` as in Cinder."""

    api_host: str = "127.0.0.1"
    api_port: int = 8776
    public_endpoint: str | None = None
    """Base URL used in links and version documents; default: the request's own URL."""

    temporal_address: str | None = None
    """`host:port`; default: temporalio envconfig (`TEMPORAL_ADDRESS`), else 127.0.0.1:7233."""
    temporal_namespace: str | None = None
    control_task_queue: str = "cinderflow-control"

    auth_strategy: Literal["noauth", "keystone"] = "noauth"
    """`noauth` (tests, `cinderflow dev`: the token names user and project, roles from
    `X-Roles`) or `keystone` (keystonemiddleware's auth_token validates every token)."""
    keystone_auth_url: str | None = None
    """Keystone's identity endpoint (`http://keystone:5000/v3`), where tokens are validated."""
    keystone_username: str = "cinderflow"
    """The service user auth_token validates tokens as (admin or service role in its
    project)."""
    keystone_password: SecretStr | None = None
    keystone_project_name: str = "service"
    keystone_user_domain_name: str = "Default"
    keystone_project_domain_name: str = "Default"
    keystone_interface: str = "public"
    """Which catalog endpoint of Keystone auth_token talks to."""
    keystone_authtoken: dict[str, str] = Field(default_factory=dict)
    """Further keystonemiddleware auth_token options (`memcached_servers`, `cafile`,
    `token_cache_time`, `service_token_roles_required`, ...), over the ones above."""
    admin_users: list[str] = Field(default_factory=lambda: ["admin"])
    policy_file: Path | None = None
    """An oslo.policy `policy.yaml` overriding the default rules (Cinder's rule names;
    `oslopolicy-sample-generator --namespace cinderflow` prints them); unset: the defaults."""
    insecure_noauth_any_address: bool = False
    """Let a `noauth` API listen on an address other than loopback. noauth believes the token
    and roles a caller sends (anyone who reaches the port can be admin), so this is for a
    closed test network only; without it such an API refuses to start."""

    backends: list[BackendConfig] = Field(default_factory=list)
    default_volume_type: str = "__DEFAULT__"
    storage_availability_zone: str = "nova"
    osapi_max_limit: int = 1000

    quota_volumes: int = 10
    quota_snapshots: int = 10
    quota_gigabytes: int = 1000
    quota_backups: int = 10
    quota_backup_gigabytes: int = 1000
    quota_groups: int = 10
    per_volume_size_limit: int = -1
    """Largest volume a project may create (GiB), the `per_volume_gigabytes` default; -1: none."""
    no_snapshot_gb_quota: bool = False
    """Do not count snapshot sizes in `gigabytes`."""
    message_ttl: float = 2592000.0
    """Seconds a user message is kept (Cinder's default: 30 days)."""

    idempotency_key_retention: float = 86400.0
    """Seconds an `Idempotency-Key` of an operation-starting POST is kept: a repeat within
    them gets the first response; after them the key is free again."""
    idempotency_secret: SecretStr | None = None
    """Seals the responses kept for `Idempotency-Key` repeats; every API process of a
    deployment must have the same. Unset: `<data_dir>/idempotency.secret`, made on first use
    (one host)."""
    operation_retention: float = 30 * 86400.0
    """Seconds the operations API keeps an operation after it ended. Keep it at least the
    Temporal namespace's retention (the control worker warns at start if it is shorter):
    the record is what lists it once Temporal has forgotten the workflow."""
    stuck_operation_threshold: float = 3600.0
    """An operation running longer than this counts in the `cinderflow_operations_stuck`
    metric."""
    temporal_ui_url: str | None = None
    """The Temporal Web UI's base URL (`http://127.0.0.1:8233`), for admins' links from an
    operation to its workflow; `cinderflow dev` sets it."""
    metrics_port: int | None = None
    """`cinderflow worker`: serve Prometheus metrics on this port (`metrics_host`); the API
    serves them at `/metrics` on its own port."""
    metrics_host: str = "127.0.0.1"

    stats_interval: float = 10.0
    """Seconds between two `get_volume_stats` reports of a backend worker."""
    service_down_time: float = 60.0
    """A service whose last report is older than this is `down`."""

    outbox_sweep_interval: float = 5.0
    outbox_grace: float = 5.0
    """The sweeper starts outbox rows older than this (the API normally starts them at once)."""

    driver_heartbeat_timeout: float = 30.0
    """A driver call whose worker stops heartbeating for this long is retried on another attempt."""
    driver_timeout: float = 6 * 3600.0
    driver_max_attempts: int = 5
    driver_queue_timeout: float = 3600.0
    """A driver call no worker of its backend picks up within this long fails the operation."""
    attachment_timeout: float = 60.0
    """How long an attachment request waits for the backend before answering 503."""
    driver_concurrency: int = 8
    """Driver calls one worker runs at once, per backend."""
    db_concurrency: int = 16
    """Database steps one worker runs at once."""

    compute_endpoint: str | None = None
    """Compute API base URL (e.g. http://nova:8774/v2.1) for volume-extended events."""
    compute_token: str | None = None
    """Static X-Auth-Token for the compute API, if it needs one."""
    compute_api_version: str = "2.51"
    compute_completion_api_version: str | None = None
    """Microversion for events the compute must answer with os-extend_volume_completion
    (default: compute_api_version)."""
    extend_completion_timeout: float = 600.0
    """Seconds an online extend waits for the compute's os-extend_volume_completion."""
    migration_completion_timeout: float = 3600.0
    """Seconds the migration of an attached volume waits for the compute's swap
    (os-migrate_volume_completion) before it rolls back."""
    reset_wait_timeout: float = 30.0
    """Seconds os-reset_status waits for the reset's outcome before answering 202 anyway."""

    key_manager: Literal["local", "vault", "barbican"] = "local"
    """Where volume keys live (through castellan): `local` seals them in cinderflow's
    database; `vault` is a Vault or OpenBao KV mount; `barbican` is OpenStack's key manager."""
    vault_url: str | None = None
    """Vault/OpenBao base URL, e.g. http://127.0.0.1:8200 (key_manager `vault`)."""
    vault_token: SecretStr | None = None
    """A token for Vault; or AppRole: vault_approle_role_id + vault_approle_secret_id."""
    vault_approle_role_id: str | None = None
    vault_approle_secret_id: SecretStr | None = None
    vault_mount: str = "secret"
    """The KV mount keys live in. Use a dedicated KV v1 mount: a KV v2 delete is soft."""
    vault_kv_version: int = 2
    vault_namespace: str | None = None
    barbican_endpoint: str | None = None
    """Barbican's URL (key_manager `barbican`); default: from the Keystone catalog."""
    barbican_auth_endpoint: str | None = None
    """Keystone's URL for the Barbican backend."""
    master_key_file: Path | None = None
    """The local key manager's master key (created on first use, mode 0600); default:
    `<data_dir>/master.key`. Back it up separately: without it encrypted volumes are lost."""

    image_endpoint: str | None = None
    """The image service (Glance) base URL, e.g. http://127.0.0.1:9292; without it, volumes
    cannot be created from images or uploaded to them."""
    image_conversion_dir: Path | None = None
    """Where a backend worker keeps an image while it converts it (default:
    `<data_dir>/image-conversion`, mode 0700); each file is removed when its step ends."""
    image_key_sweep_interval: float = 300.0
    """Seconds between two sweeps that delete the keys of uploaded images that are gone
    (needed with the `local` key manager, which the image service cannot reach)."""
    image_key_grace: float = 3600.0
    """Seconds an image must stay gone before its key is deleted: a misconfigured image
    endpoint answering "not found" for everything must not wipe every image's key at once."""
    enable_force_upload: bool = False
    """Allow `force` uploads of in-use volumes to images (Cinder's enable_force_upload)."""

    failpoint_dir: Path | None = None
    """Testing seam: a directory of `<name>.hold` files that pause named points (failpoints.py)."""

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'cinderflow.sqlite'}"

    def backend(self, name: str) -> BackendConfig:
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(f"backend {name!r} is not configured")


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from overrides, the environment and the TOML file (if any)."""
    path = config_file or os.environ.get("CINDERFLOW_CONFIG")
    cls: type[Settings] = Settings
    if path:
        config = SettingsConfigDict(**{**Settings.model_config, "toml_file": Path(path)})
        cls = type("Settings", (Settings,), {"model_config": config})
    return cls(**{k: v for k, v in overrides.items() if v is not None})


class InsecureSettings(Exception):
    """Settings that would expose the service without authentication; the message says why
    and what to change."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere


def refuse_insecure_exposure(settings: Settings) -> None:
    """InsecureSettings for a `noauth` API bound beyond loopback (unless the operator said
    `insecure_noauth_any_address`)."""
    if (
        settings.auth_strategy == "noauth"
        and not is_loopback(settings.api_host)
        and not settings.insecure_noauth_any_address
    ):
        raise InsecureSettings(
            f"refusing to serve the API on {settings.api_host} with auth_strategy noauth: "
            "noauth trusts whatever token and roles a caller sends. Bind to 127.0.0.1, or (on a "
            "closed test network only) set CINDERFLOW_INSECURE_NOAUTH_ANY_ADDRESS=true."
        )
