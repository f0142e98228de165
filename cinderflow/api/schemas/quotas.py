"""Quota bodies (Cinder's `cinder/api/schemas/quotas.py`) and views."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, field_validator

from cinderflow.api.validation import DB_MAX_INT, StrictModel


def _limit(value: Any) -> Any:
    """An integer or its decimal string, -1 meaning unlimited; never a bool."""
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError("must be an integer") from None
    return value


QuotaLimit = Annotated[int, BeforeValidator(_limit), Field(ge=-1, le=DB_MAX_INT)]


IGNORED_KEYS = frozenset({"id", "tenant_id"})
"""Sent by clients (cinderclient sends `tenant_id`) and ignored, as Cinder does."""


QUOTA_KEY = (
    r"^(volumes|snapshots|gigabytes)(_.+)?$"
    r"|^(backups|backup_gigabytes|groups|per_volume_gigabytes|id|tenant_id)$"
)
"""The resources a quota set may name (per-type ones must also name an existing type)."""


class QuotaSetBody(StrictModel):
    quota_set: dict[str, QuotaLimit] = Field(
        min_length=1,
        json_schema_extra={
            "propertyNames": {"pattern": QUOTA_KEY},
            "properties": {"id": {"type": "string"}, "tenant_id": {"type": "string"}},
        },
    )

    @field_validator("quota_set", mode="before")
    @classmethod
    def _drop_ignored(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k not in IGNORED_KEYS}
        return value


class QuotaUsage(BaseModel):
    limit: int
    in_use: int
    reserved: int
    allocated: int


class QuotaSetResponse(BaseModel):
    quota_set: dict[str, int | str | QuotaUsage]


class AbsoluteLimits(BaseModel):
    """Wire names are camelCase, as Cinder's."""

    maxTotalVolumes: int
    maxTotalSnapshots: int
    maxTotalVolumeGigabytes: int
    maxTotalBackups: int
    maxTotalBackupGigabytes: int
    totalVolumesUsed: int
    totalGigabytesUsed: int
    totalSnapshotsUsed: int
    totalBackupsUsed: int
    totalBackupGigabytesUsed: int


class Limits(BaseModel):
    rate: list[Any]
    absolute: AbsoluteLimits


class LimitsResponse(BaseModel):
    limits: Limits
