"""Snapshot bodies (Cinder's `cinder/api/schemas/snapshots.py`) and views."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cinderflow.api.validation import Boolean, Metadata, Name, StrictModel


class SnapshotCreate(StrictModel):
    volume_id: str
    name: Name | None = None
    display_name: Name | None = None
    description: Name | None = None
    display_description: Name | None = None
    force: Boolean | None = Field(
        default=None,
        json_schema_extra={
            "enum": [True, None],
            "description": "before 3.66 true or false; from 3.66 only a true value is taken "
            "(and ignored)",
        },
    )
    metadata: Metadata | None = None


class SnapshotCreateBody(StrictModel):
    snapshot: SnapshotCreate


class SnapshotUpdate(StrictModel):
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    name: Name | None = None
    display_name: Name | None = None
    description: Name | None = None
    display_description: Name | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> SnapshotUpdate:
        if not self.model_fields_set:
            raise ValueError("at least one of name, description must be given")
        return self


class SnapshotUpdateBody(StrictModel):
    snapshot: SnapshotUpdate


class ForceDelete(StrictModel):
    force_delete: dict | None = Field(
        alias="os-force_delete", json_schema_extra={"maxProperties": 0}
    )
    """`{}` (or null), as cinderclient sends it; its contents were never read."""

    @field_validator("force_delete")
    @classmethod
    def _empty(cls, value: dict | None) -> dict | None:
        if value:
            raise ValueError("os-force_delete takes an empty object")
        return value


class SnapshotView(BaseModel):
    id: str
    created_at: str
    updated_at: str | None
    name: str | None
    description: str | None
    volume_id: str
    status: str
    size: int
    metadata: dict[str, str]
    group_snapshot_id: str | None = Field(default=None, description="from 3.14")
    user_id: str | None = Field(default=None, description="from 3.41")
    consumes_quota: bool | None = Field(default=None, description="from 3.65")


class SnapshotBody(BaseModel):
    snapshot: SnapshotView


class SnapshotList(BaseModel):
    snapshots: list[SnapshotView]
    count: int | None = None
