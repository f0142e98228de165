"""Every authorisation rule in one table (Cinder's policy names, its default rules).

Rules: `admin`; `member` = admin, or member of the target project; `reader` = admin, or reader
or member of the target project. A failed check is 403 "Policy doesn't allow X to be performed.";
callers turn unauthorised reads of one resource into 404, as Cinder does.
"""

from __future__ import annotations

from collections.abc import Callable

from cinderflow.api.context import MEMBER, READER, SERVICE, RequestContext
from cinderflow.api.errors import Forbidden

Rule = Callable[[RequestContext, str | None], bool]


def _admin(ctx: RequestContext, project_id: str | None) -> bool:
    return ctx.is_admin


def _member(ctx: RequestContext, project_id: str | None) -> bool:
    return ctx.is_admin or (
        MEMBER in ctx.roles and (project_id is None or project_id == ctx.project_id)
    )


def _admin_or_service(ctx: RequestContext, project_id: str | None) -> bool:
    return ctx.is_admin or SERVICE in ctx.roles


def _reader(ctx: RequestContext, project_id: str | None) -> bool:
    return ctx.is_admin or (
        bool({READER, MEMBER} & ctx.roles) and (project_id is None or project_id == ctx.project_id)
    )


RULES: dict[str, Rule] = {
    "volume:create": _member,
    "volume:get": _reader,
    "volume:get_all": _reader,
    "volume:update": _member,
    "volume:delete": _member,
    "volume:force_delete": _admin,
    "volume:get_volume_metadata": _reader,
    "volume:create_volume_metadata": _member,
    "volume:update_volume_metadata": _member,
    "volume:delete_volume_metadata": _member,
    "volume_extension:volume_tenant_attribute": _admin,
    "volume_extension:volume_host_attribute": _admin,
    "volume_extension:volume_mig_status_attribute": _admin,
    "volume:get_all_tenants": _admin,
    "volume_extension:quotas:show": _reader,
    "volume_extension:quotas:update": _admin,
    "volume_extension:quotas:delete": _admin,
    "limits_extension:used_limits": _reader,
    "volume_extension:type_get_all": _reader,
    "volume_extension:type_get": _reader,
    "volume_extension:type_create": _admin,
    "volume_extension:type_update": _admin,
    "volume_extension:type_delete": _admin,
    "volume_extension:access_types_extra_specs": _reader,
    "volume_extension:access_types_qos_specs_id": _admin,
    "volume_extension:types_extra_specs:index": _reader,
    "volume_extension:types_extra_specs:show": _reader,
    "volume_extension:types_extra_specs:create": _admin,
    "volume_extension:types_extra_specs:update": _admin,
    "volume_extension:types_extra_specs:delete": _admin,
    "volume_extension:types_extra_specs:read_sensitive": _admin,
    "volume_extension:volume_type_access": _member,
    "volume_extension:volume_type_access:get_all_for_type": _admin,
    "volume_extension:volume_type_access:addProjectAccess": _admin,
    "volume_extension:volume_type_access:removeProjectAccess": _admin,
    "volume_extension:volume_type_encryption:get": _admin,
    "volume_extension:volume_type_encryption:create": _admin,
    "volume_extension:volume_type_encryption:update": _admin,
    "volume_extension:volume_type_encryption:delete": _admin,
    "message:get_all": _reader,
    "message:get": _reader,
    "message:delete": _member,
    "volume_extension:services:index": _admin,
    "volume_extension:services:update": _admin,
    "volume:get_snapshot": _reader,
    "volume:get_all_snapshots": _reader,
    "volume:create_snapshot": _member,
    "volume:update_snapshot": _member,
    "volume:delete_snapshot": _member,
    "volume_extension:snapshot_admin_actions:force_delete": _admin,
    "volume_extension:extended_snapshot_attributes": _reader,
    "volume:get_snapshot_metadata": _reader,
    "volume:update_snapshot_metadata": _member,
    "volume:delete_snapshot_metadata": _member,
    "volume:attachment_get": _reader,
    "volume:attachment_get_all": _reader,
    "volume:attachment_create": _member,
    "volume:attachment_update": _member,
    "volume:attachment_delete": _member,
    "volume:attachment_complete": _member,
    "volume:extend": _member,
    "volume:extend_attached_volume": _member,
    "volume:retype": _member,
    "volume:create_transfer": _member,
    "volume:accept_transfer": _member,
    "volume:delete_transfer": _member,
    "volume:get_transfer": _reader,
    "volume:get_all_transfers": _reader,
    "volume:multiattach": _member,
    "volume_extension:volume_actions:upload_image": _member,
    "volume_extension:volume_actions:upload_public": _admin,
    "volume_extension:volume_admin_actions:extend_volume_completion": _admin_or_service,
    "volume_extension:volume_admin_actions:migrate_volume_completion": _admin_or_service,
    "volume_extension:volume_admin_actions:migrate_volume": _admin,
    "volume_extension:volume_admin_actions:reset_status": _admin,
    "volume_extension:snapshot_admin_actions:reset_status": _admin,
}


def allowed(ctx: RequestContext, action: str, project_id: str | None = None) -> bool:
    return RULES[action](ctx, project_id)


def authorize(ctx: RequestContext, action: str, project_id: str | None = None) -> None:
    if not allowed(ctx, action, project_id):
        raise Forbidden(f"Policy doesn't allow {action} to be performed.")
