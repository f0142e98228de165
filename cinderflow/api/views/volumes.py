"""Volume views: Cinder's v3 detail/summary shapes, microversion- and role-dependent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from sqlmodel import Session

from cinderflow.api import microversions as mv
from cinderflow.api.context import SERVICE
from cinderflow.api.routing import ApiRequest
from cinderflow.api.views import Gate, gated, timestamp
from cinderflow.db import admin_metadata
from cinderflow.db import attachments as attachment_db
from cinderflow.db import volumes as volume_db
from cinderflow.db.metadata import VOLUMES, metadata_of
from cinderflow.db.models import Attachment, Volume

GATES = (
    Gate("group_id", mv.GROUP_VOLUME),
    Gate("provider_id", mv.VOLUME_DETAIL_PROVIDER_ID, admin=True),
    Gate("shared_targets", mv.VOLUME_SHARED_TARGETS_AND_SERVICE_FIELDS),
    Gate("service_uuid", mv.VOLUME_SHARED_TARGETS_AND_SERVICE_FIELDS),
    Gate("cluster_name", mv.VOLUME_CLUSTER_NAME, admin=True),
    Gate("volume_type_id", mv.VOLUME_TYPE_ID_IN_VOL_DETAILS),
    Gate("encryption_key_id", mv.ENCRYPTION_KEY_ID_IN_DETAILS),
    Gate("consumes_quota", mv.USE_QUOTA),
)


@dataclass
class VolumeView:
    """A volume row with what its view needs from other tables."""

    volume: Volume
    metadata: dict[str, str]
    type_name: str | None
    attachments: list[Attachment] = field(default_factory=list)
    image_metadata: dict[str, str] = field(default_factory=dict)
    type_encrypted: bool = False
    """The volume's type has an encryption spec: `encrypted` is true from the create
    response on, before the workflow has made the key (Cinder makes it in the API)."""


def load(session: Session, volumes: list[Volume]) -> list[VolumeView]:
    """Views for many volumes with one query per related table."""
    ids = [v.id for v in volumes]
    metadata = metadata_of(session, VOLUMES, ids)
    for volume_id, shown in admin_metadata.visible_of(session, ids).items():
        metadata[volume_id].update(shown)  # shadows user values, as Cinder
    names = volume_db.type_names(session, (v.volume_type_id for v in volumes))
    attached = attachment_db.attached_to(session, ids)
    images = volume_db.image_metadata_of(session, ids)
    encrypted = volume_db.encrypted_types(session, (v.volume_type_id for v in volumes))
    return [
        VolumeView(
            v,
            metadata[v.id],
            names.get(v.volume_type_id),
            attached[v.id],
            images.get(v.id, {}),
            type_encrypted=v.volume_type_id in encrypted,
        )
        for v in volumes
    ]


def attachment_entry(req: ApiRequest, attachment: Attachment) -> dict[str, Any]:
    """An entry of the volume's `attachments` (what `cinder list`/`show` and Nova read)."""
    sees_hosts = req.ctx.is_admin or SERVICE in req.ctx.roles or SERVICE in req.ctx.service_roles
    return {
        "id": attachment.volume_id,
        "attachment_id": attachment.id,
        "volume_id": attachment.volume_id,
        "server_id": attachment.instance_uuid,
        "host_name": attachment.attached_host if sees_hosts else None,
        "device": attachment.mountpoint,
        "attached_at": timestamp(attachment.attach_time),
    }


def summary(req: ApiRequest, view: VolumeView) -> dict[str, Any]:
    v = view.volume
    return {"id": v.id, "name": v.name, "links": req.link("volumes", v.id)}


def detail(req: ApiRequest, view: VolumeView) -> dict[str, Any]:
    v = view.volume
    body: dict[str, Any] = {
        **summary(req, view),
        "status": v.status,
        "size": v.size,
        "availability_zone": v.availability_zone,
        "created_at": timestamp(v.created_at),
        "updated_at": timestamp(v.updated_at),
        "attachments": [attachment_entry(req, a) for a in view.attachments],
        "description": v.description,
        "volume_type": view.type_name,
        "snapshot_id": v.snapshot_id,
        "source_volid": v.source_volid,
        "metadata": view.metadata,
        "user_id": v.user_id,
        "bootable": str(v.bootable).lower(),
        "encrypted": v.encryption_key_id is not None or view.type_encrypted,
        "replication_status": None,
        "consistencygroup_id": None,
        "multiattach": v.multiattach,
    }
    if view.image_metadata:
        body["volume_image_metadata"] = view.image_metadata
    if req.allowed("volume_extension:volume_tenant_attribute"):
        body["os-vol-tenant-attr:tenant_id"] = v.project_id
    if req.allowed("volume_extension:volume_host_attribute"):
        body["os-vol-host-attr:host"] = v.host
    if req.allowed("volume_extension:volume_mig_status_attribute"):
        body["os-vol-mig-status-attr:migstat"] = v.migration_status
        body["os-vol-mig-status-attr:name_id"] = v.name_id
    versioned = {
        "group_id": None,
        "provider_id": v.provider_id,
        "shared_targets": False,
        "service_uuid": None,
        "cluster_name": None,
        "volume_type_id": v.volume_type_id,
        "encryption_key_id": v.encryption_key_id,
        "consumes_quota": v.consumes_quota,
    }
    body.update(gated(req, versioned, GATES))
    return body


def collection(
    req: ApiRequest,
    views: list[VolumeView],
    *,
    detailed: bool,
    limit: int,
    count: int | None = None,
) -> dict[str, Any]:
    render = detail if detailed else summary
    body: dict[str, Any] = {"volumes": [render(req, view) for view in views]}
    if views and len(views) >= limit:
        params = {k: v for k, v in req.query.items() if k != "marker"}
        params["marker"] = views[-1].volume.id
        path = "volumes/detail" if detailed else "volumes"
        href = f"{req.base_url}/v3/{req.ctx.project_id}/{path}?{urlencode(params)}"
        body["volumes_links"] = [{"rel": "next", "href": href}]
    if count is not None and req.at_least(mv.SUPPORT_COUNT_INFO):
        body["count"] = count
    return body
