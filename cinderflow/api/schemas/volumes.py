"""Volume bodies (Cinder's `cinder/api/schemas/volumes.py`, strict as from 3.53) and views."""

from __future__ import annotations

from pydantic import BaseModel, Field

from cinderflow.api.validation import Boolean, FreeForm, Metadata, Name, PositiveInt, StrictModel


class VolumeCreate(StrictModel):
    size: PositiveInt | None = None
    name: Name | None = None
    description: Name | None = None
    display_name: Name | None = None
    display_description: Name | None = None
    volume_type: Name | None = None
    availability_zone: Name | None = None
    metadata: Metadata | None = None
    multiattach: Boolean | None = None
    snapshot_id: str | None = None
    source_volid: str | None = None
    imageRef: str | None = None
    image_id: str | None = None
    backup_id: str | None = None
    consistencygroup_id: str | None = None
    group_id: str | None = None


class VolumeCreateBody(StrictModel):
    volume: VolumeCreate
    scheduler_hints: FreeForm | None = Field(default=None, alias="OS-SCH-HNT:scheduler_hints")


class VolumeUpdate(StrictModel):
    name: Name | None = None
    description: Name | None = None
    display_name: Name | None = None
    display_description: Name | None = None
    metadata: Metadata | None = None


class VolumeUpdateBody(StrictModel):
    volume: VolumeUpdate


class MetadataBody(StrictModel):
    metadata: Metadata


class MetaItemBody(StrictModel):
    meta: Metadata


# Responses (documentation and conformance tests; views build plain dicts) -------------------


class Link(BaseModel):
    rel: str
    href: str


class VolumeAttachmentRef(BaseModel):
    id: str
    attachment_id: str
    volume_id: str
    server_id: str | None
    host_name: str | None = None
    device: str | None = None
    attached_at: str | None = None


class VolumeSummary(BaseModel):
    id: str
    name: str | None
    links: list[Link]


class VolumeDetail(VolumeSummary):
    status: str
    size: int
    availability_zone: str
    created_at: str
    updated_at: str | None
    attachments: list[VolumeAttachmentRef]
    description: str | None
    volume_type: str | None
    snapshot_id: str | None
    source_volid: str | None
    metadata: dict[str, str]
    user_id: str
    bootable: str
    encrypted: bool
    replication_status: str | None
    consistencygroup_id: str | None
    multiattach: bool
    os_vol_tenant_attr_tenant_id: str | None = Field(
        default=None, alias="os-vol-tenant-attr:tenant_id", description="admin only"
    )
    os_vol_host_attr_host: str | None = Field(
        default=None, alias="os-vol-host-attr:host", description="admin only"
    )
    os_vol_mig_status_attr_migstat: str | None = Field(
        default=None, alias="os-vol-mig-status-attr:migstat", description="admin only"
    )
    os_vol_mig_status_attr_name_id: str | None = Field(
        default=None, alias="os-vol-mig-status-attr:name_id", description="admin only"
    )
    group_id: str | None = Field(default=None, description="from 3.13")
    provider_id: str | None = Field(default=None, description="from 3.21, admin only")
    shared_targets: bool | None = Field(default=None, description="from 3.48")
    service_uuid: str | None = Field(default=None, description="from 3.48")
    cluster_name: str | None = Field(default=None, description="from 3.61, admin only")
    volume_type_id: str | None = Field(default=None, description="from 3.63")
    encryption_key_id: str | None = Field(default=None, description="from 3.64")
    consumes_quota: bool | None = Field(default=None, description="from 3.65")
    migration_progress: str | None = Field(
        default=None,
        description="from 3.72, admin only, volume show only while migrating: percent copied",
    )


class VolumeBody(BaseModel):
    volume: VolumeDetail


class VolumeList(BaseModel):
    volumes: list[VolumeDetail] | list[VolumeSummary]
    volumes_links: list[Link] | None = None
    count: int | None = Field(default=None, description="from 3.45 with `with_count=true`")


class MetadataResponse(BaseModel):
    metadata: dict[str, str]


class MetaItemResponse(BaseModel):
    meta: dict[str, str]
