"""Volume type, extra spec, access and encryption bodies (Cinder's schemas) and views."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
)
from pydantic.json_schema import SkipJsonSchema

from cinderflow.api.validation import DB_MAX_INT, NOT_BLANK, Boolean, Name, NotNull, StrictModel
from cinderflow.encryption import PROVIDERS

SPEC_KEY = r"^[a-zA-Z0-9-_:. /]{1,255}$"
EXTRA_SPEC_KEY = r"^[a-zA-Z0-9-_:.]{1,255}$"


def _type_name(value: str) -> str:
    if not value.strip():
        raise ValueError("An invalid 'name' value was provided. The 'name' can not be empty.")
    return value


def _spec_value(value: Any) -> Any:
    return "" if value is None else value


TypeName = Annotated[
    str,
    Field(min_length=1, max_length=255, json_schema_extra=NOT_BLANK),
    AfterValidator(_type_name),
]
SpecValue = Annotated[
    str,
    BeforeValidator(_spec_value, json_schema_input_type=str | None),
    Field(max_length=255),
]
"""A string; null is taken as "" (as Cinder stores it)."""
ExtraSpecs = dict[Annotated[str, StringConstraints(pattern=EXTRA_SPEC_KEY)], SpecValue]
TypeSpecs = dict[Annotated[str, StringConstraints(pattern=SPEC_KEY)], SpecValue]


class TypeCreate(StrictModel):
    name: TypeName
    description: Name | None = None
    extra_specs: TypeSpecs | None = None
    is_public: Boolean = Field(default=True, alias="os-volume-type-access:is_public")


class TypeCreateBody(StrictModel):
    volume_type: TypeCreate


class TypeUpdate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["name"], "properties": {"name": {"type": "string"}}},
                {"required": ["description"], "properties": {"description": {"type": "string"}}},
                {"required": ["is_public"]},
            ]
        }
    )

    name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    """null is "no change": cinderclient sends `"name": null` with a new description."""
    description: Name | None = None
    is_public: Annotated[Boolean | SkipJsonSchema[None], NotNull] = None


class TypeUpdateBody(StrictModel):
    volume_type: TypeUpdate


class ExtraSpecsBody(StrictModel):
    extra_specs: ExtraSpecs


OneExtraSpec = RootModel[Annotated[ExtraSpecs, Field(min_length=1, max_length=1)]]
"""`PUT /types/{id}/extra_specs/{key}` sends the bare `{key: value}`."""


class ProjectRef(StrictModel):
    project: Annotated[str, Field(min_length=1, max_length=255)]


class AddProjectAccess(StrictModel):
    addProjectAccess: ProjectRef


class RemoveProjectAccess(StrictModel):
    removeProjectAccess: ProjectRef


def _provider(value: str) -> str:
    if value not in PROVIDERS:
        raise ValueError(f"provider must be one of {', '.join(sorted(PROVIDERS))}")
    return value


def _key_size(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("key_size must be an integer.")
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise ValueError("key_size must be an integer.")
        return int(value)
    return value


KeySize = Annotated[int, BeforeValidator(_key_size), Field(ge=0, le=DB_MAX_INT)]
Provider = Annotated[
    str,
    Field(max_length=255, json_schema_extra={"enum": sorted(PROVIDERS)}),
    AfterValidator(_provider),
]
ControlLocation = Literal["front-end", "back-end"]
Cipher = Annotated[str, Field(max_length=255)]


class EncryptionCreate(StrictModel):
    provider: Provider
    control_location: ControlLocation
    cipher: Cipher | None = None
    key_size: KeySize | None = None


class EncryptionCreateBody(StrictModel):
    encryption: EncryptionCreate


class EncryptionUpdate(StrictModel):
    provider: Provider | None = None
    control_location: ControlLocation | None = None
    cipher: Cipher | None = None
    key_size: KeySize | None = None


class EncryptionUpdateBody(StrictModel):
    encryption: EncryptionUpdate


# Responses ----------------------------------------------------------------------------------


class VolumeTypeView(BaseModel):
    id: str
    name: str
    is_public: bool
    description: str | None
    extra_specs: dict[str, str] | None = None
    qos_specs_id: str | None = Field(default=None, description="admin only")
    os_volume_type_access_is_public: bool | None = Field(
        default=None, alias="os-volume-type-access:is_public"
    )


class VolumeTypeBody(BaseModel):
    volume_type: VolumeTypeView


class VolumeTypeList(BaseModel):
    volume_types: list[VolumeTypeView]


class TypeAccessList(BaseModel):
    volume_type_access: list[dict[str, str]]


class EncryptionView(BaseModel):
    volume_type_id: str
    encryption_id: str
    provider: str
    control_location: str
    cipher: str | None
    key_size: int | None


class EncryptionBody(BaseModel):
    encryption: dict[str, Any]


class EncryptionSpec(BaseModel):
    """`GET /types/{id}/encryption`: the row's columns, flat, or `{}` for a plain type."""

    volume_type_id: str | None = None
    encryption_id: str | None = None
    provider: str | None = None
    control_location: str | None = None
    cipher: str | None = None
    key_size: int | None = None
    created_at: str | None = None
    updated_at: str | None = None
    deleted: bool | None = None
    deleted_at: str | None = None


SpecItem = RootModel[dict[str, Any]]
"""One field of a spec or one extra spec, as `{key: value}`."""
