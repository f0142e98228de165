"""Every authorisation rule: oslo.policy defaults under Cinder's rule names, with Cinder's
secure-RBAC personas (admin, project member, project reader, service), overridable by an
operator's `policy.yaml` (setting `policy_file`).

`oslopolicy-sample-generator --namespace cinderflow` prints the defaults. A failed check is
403 "Policy doesn't allow X to be performed."; callers turn unauthorised reads of one resource
into 404, as Cinder does. Credentials are the request context's user, project, roles and
service roles (a service token's); the target is the resource's project.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oslo_config import cfg
from oslo_policy import policy as oslo_policy

from cinderflow.api.errors import Forbidden

if TYPE_CHECKING:
    from cinderflow.api.context import RequestContext

log = logging.getLogger(__name__)

NAMESPACE = "cinderflow"

ADMIN = "rule:admin_api"
MEMBER = "rule:project_member_or_admin"
READER = "rule:project_reader_or_admin"
ADMIN_OR_SERVICE = "rule:admin_or_service"

BASE_RULES = [
    oslo_policy.RuleDefault("context_is_admin", "role:admin", "Decides is_admin of a request."),
    oslo_policy.RuleDefault("admin_api", "rule:context_is_admin", "Cloud administrators."),
    oslo_policy.RuleDefault(
        "project_member", "role:member and project_id:%(project_id)s", "Members of the project."
    ),
    oslo_policy.RuleDefault(
        "project_reader",
        "(role:reader or role:member) and project_id:%(project_id)s",
        "Readers of the project (a member reads too, as Keystone's implied roles say).",
    ),
    oslo_policy.RuleDefault(
        "project_member_or_admin", "rule:project_member or rule:admin_api", "Member or admin."
    ),
    oslo_policy.RuleDefault(
        "project_reader_or_admin", "rule:project_reader or rule:admin_api", "Reader or admin."
    ),
    oslo_policy.RuleDefault(
        "service_api",
        "role:service or service_roles:service",
        "A service's account (a compute completing an extend or a migration), by its own "
        "token's role or a service token's.",
    ),
    oslo_policy.RuleDefault(
        "admin_or_service", "rule:admin_api or rule:service_api", "Admin or a service."
    ),
]

ACTIONS: dict[str, str] = {
    "volume:create": MEMBER,
    "volume:get": READER,
    "volume:get_all": READER,
    "volume:update": MEMBER,
    "volume:delete": MEMBER,
    "volume:force_delete": ADMIN,
    "volume:get_volume_metadata": READER,
    "volume:create_volume_metadata": MEMBER,
    "volume:update_volume_metadata": MEMBER,
    "volume:delete_volume_metadata": MEMBER,
    "volume_extension:volume_tenant_attribute": ADMIN,
    "volume_extension:volume_host_attribute": ADMIN,
    "volume_extension:volume_mig_status_attribute": ADMIN,
    "volume:get_all_tenants": ADMIN,
    "volume_extension:quotas:show": READER,
    "volume_extension:quotas:update": ADMIN,
    "volume_extension:quotas:delete": ADMIN,
    "limits_extension:used_limits": READER,
    "volume_extension:type_get_all": READER,
    "volume_extension:type_get": READER,
    "volume_extension:type_create": ADMIN,
    "volume_extension:type_update": ADMIN,
    "volume_extension:type_delete": ADMIN,
    "volume_extension:access_types_extra_specs": READER,
    "volume_extension:access_types_qos_specs_id": ADMIN,
    "volume_extension:types_extra_specs:index": READER,
    "volume_extension:types_extra_specs:show": READER,
    "volume_extension:types_extra_specs:create": ADMIN,
    "volume_extension:types_extra_specs:update": ADMIN,
    "volume_extension:types_extra_specs:delete": ADMIN,
    "volume_extension:types_extra_specs:read_sensitive": ADMIN,
    "volume_extension:volume_type_access": MEMBER,
    "volume_extension:volume_type_access:get_all_for_type": ADMIN,
    "volume_extension:volume_type_access:addProjectAccess": ADMIN,
    "volume_extension:volume_type_access:removeProjectAccess": ADMIN,
    "volume_extension:volume_type_encryption:get": ADMIN,
    "volume_extension:volume_type_encryption:create": ADMIN,
    "volume_extension:volume_type_encryption:update": ADMIN,
    "volume_extension:volume_type_encryption:delete": ADMIN,
    "message:get_all": READER,
    "message:get": READER,
    "message:delete": MEMBER,
    "volume_extension:services:index": ADMIN,
    "volume_extension:services:update": ADMIN,
    "scheduler_extension:scheduler_stats:get_pools": ADMIN,
    "volume:get_snapshot": READER,
    "volume:get_all_snapshots": READER,
    "volume:create_snapshot": MEMBER,
    "volume:update_snapshot": MEMBER,
    "volume:delete_snapshot": MEMBER,
    "volume_extension:snapshot_admin_actions:force_delete": ADMIN,
    "volume_extension:extended_snapshot_attributes": READER,
    "volume:get_snapshot_metadata": READER,
    "volume:update_snapshot_metadata": MEMBER,
    "volume:delete_snapshot_metadata": MEMBER,
    "volume:attachment_get": READER,
    "volume:attachment_get_all": READER,
    "volume:attachment_create": MEMBER,
    "volume:attachment_update": MEMBER,
    "volume:attachment_delete": MEMBER,
    "volume:attachment_complete": MEMBER,
    "volume:extend": MEMBER,
    "volume:extend_attached_volume": MEMBER,
    "volume:retype": MEMBER,
    "volume:create_transfer": MEMBER,
    "volume:accept_transfer": MEMBER,
    "volume:delete_transfer": MEMBER,
    "volume:get_transfer": READER,
    "volume:get_all_transfers": READER,
    "volume:multiattach": MEMBER,
    "volume_extension:volume_actions:upload_image": MEMBER,
    "volume_extension:volume_actions:upload_public": ADMIN,
    "volume_extension:volume_admin_actions:extend_volume_completion": ADMIN_OR_SERVICE,
    "volume_extension:volume_admin_actions:migrate_volume_completion": ADMIN_OR_SERVICE,
    "volume_extension:volume_admin_actions:migrate_volume": ADMIN,
    "volume_extension:volume_admin_actions:reset_status": ADMIN,
    "volume_extension:snapshot_admin_actions:reset_status": ADMIN,
    "operation:get_all": READER,
    "operation:get": READER,
    "operation:cancel": MEMBER,
}
"""Cinder's rule names (and `volume:attachment_get`/`_get_all`, cinderflow's own, for the
attachment reads Cinder leaves to project scoping) and their default rules."""


def list_rules() -> list[oslo_policy.RuleDefault]:
    """The defaults, for oslo.policy's generators (entry point `oslo.policy.policies`)."""
    return [
        *BASE_RULES,
        *(oslo_policy.RuleDefault(name, rule) for name, rule in ACTIONS.items()),
    ]


def credentials(
    user_id: str,
    project_id: str,
    roles: Iterable[str],
    service_roles: Iterable[str],
    *,
    is_admin_project: bool,
    is_admin: bool,
) -> dict[str, Any]:
    """What oslo.policy checks read (`role:…`, `project_id:…`, `service_roles:…`, and
    Cinder's `is_admin:True`, `is_admin_project:True`)."""
    return {
        "user_id": user_id,
        "project_id": project_id,
        "roles": sorted(roles),
        "service_roles": sorted(service_roles),
        "is_admin_project": is_admin_project,
        "is_admin": is_admin,
    }


class Policy:
    """The process's enforcer: the defaults, overridden by `policy_file` when given. Nothing
    else is read: no search of oslo's config directories (`~/.cinderflow`, `/etc/…`), no
    `policy.d`. A missing file is a start-up error; a file that goes missing later denies
    every request until it is back (never a silent return to the defaults)."""

    def __init__(self, policy_file: Path | None = None) -> None:
        self.policy_file = policy_file.resolve() if policy_file is not None else None
        if self.policy_file is not None and not self.policy_file.is_file():
            raise FileNotFoundError(f"policy_file {policy_file} does not exist")
        conf = cfg.ConfigOpts()
        conf([], project=NAMESPACE, default_config_files=[], default_config_dirs=[])
        self.enforcer = oslo_policy.Enforcer(
            conf,
            # an absolute path is read as it is; with none, oslo would search its config
            # directories for a policy.yaml, so "no file" is the empty file
            policy_file=str(self.policy_file) if self.policy_file else os.devnull,
        )
        conf.set_override("policy_dirs", [], group="oslo_policy")
        self.enforcer.register_defaults(list_rules())
        self.enforcer.load_rules()
        self._decide = functools.lru_cache(maxsize=8192)(self._enforce)
        self._gone_logged = False

    def check(self, rule: str, creds: dict[str, Any], project_id: str) -> bool:
        """Decisions are remembered per rule, credentials, target and policy-file version:
        oslo.policy re-reads its file and inspects each check's signature on every call
        (about 0.2 ms a decision here, several per request)."""
        version = self._version()
        if version is None:
            return False
        return self._decide(
            rule,
            creds["user_id"],
            creds["project_id"],
            tuple(creds["roles"]),
            tuple(creds["service_roles"]),
            bool(creds["is_admin_project"]),
            bool(creds["is_admin"]),
            project_id,
            version,
        )

    def _version(self) -> float | None:
        """The policy file's modification time (an edited file takes effect at once, as
        oslo.policy's own reloading would have it); None if it went missing."""
        if self.policy_file is None:
            return 0.0
        try:
            version = self.policy_file.stat().st_mtime
        except OSError:
            if not self._gone_logged:
                log.error("policy_file %s is gone: every request is denied", self.policy_file)
                self._gone_logged = True
            return None
        self._gone_logged = False
        return version

    def _enforce(
        self,
        rule: str,
        user_id: str,
        user_project: str,
        roles: tuple[str, ...],
        service_roles: tuple[str, ...],
        is_admin_project: bool,
        is_admin: bool,
        project_id: str,
        version: float,
    ) -> bool:
        creds = credentials(
            user_id,
            user_project,
            roles,
            service_roles,
            is_admin_project=is_admin_project,
            is_admin=is_admin,
        )
        return bool(
            self.enforcer.authorize(rule, {"project_id": project_id}, creds, do_raise=False)
        )


def get_enforcer() -> oslo_policy.Enforcer:
    """For `oslopolicy-policy-generator --namespace cinderflow` (entry point
    `oslo.policy.enforcer`): the defaults merged with a policy file."""
    return Policy().enforcer


def allowed(ctx: RequestContext, action: str, project_id: str | None = None) -> bool:
    """`action` on a resource of `project_id` (none: the caller's own project)."""
    return ctx.policy.check(action, ctx.credentials, project_id or ctx.project_id)


def authorize(ctx: RequestContext, action: str, project_id: str | None = None) -> None:
    if not allowed(ctx, action, project_id):
        raise Forbidden(f"Policy doesn't allow {action} to be performed.")
