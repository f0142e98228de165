"""Who is calling: the request context, built by the configured auth strategy.

`noauth` reads `X-Auth-Token: <user>:<project>` as Cinder's NoAuthMiddleware does (no colon:
the project is the user). Roles come from `X-Roles` when present; otherwise users listed in
`admin_users` are admins and everyone else is member and reader. `is_admin` is the policy's
`context_is_admin` rule over the caller's credentials, decided once per request.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import Headers

from cinderflow.api.errors import Unauthorized
from cinderflow.api.policy import Policy, credentials
from cinderflow.settings import Settings

ADMIN = "admin"
MEMBER = "member"
READER = "reader"
SERVICE = "service"


@dataclass(frozen=True)
class RequestContext:
    user_id: str
    project_id: str
    roles: frozenset[str]
    request_id: str
    policy: Policy = field(compare=False, repr=False)
    service_roles: frozenset[str] = frozenset()
    """Roles of a service token sent beside the user's (keystone's X-Service-Roles)."""
    is_admin_project: bool = True
    """Keystone's X-Is-Admin-Project (noauth: true), for rules ported from Cinder."""
    is_admin: bool = False

    @property
    def credentials(self) -> dict[str, Any]:
        return credentials(
            self.user_id,
            self.project_id,
            self.roles,
            self.service_roles,
            is_admin_project=self.is_admin_project,
            is_admin=self.is_admin,
        )


CALLER: ContextVar[RequestContext | None] = ContextVar("cinderflow_caller", default=None)
"""The request's caller, set once it is authenticated: what an operation's record says about
who asked (api/handover.py), without threading the context through every helper."""


def new_context(
    policy: Policy,
    *,
    user_id: str,
    project_id: str,
    roles: frozenset[str],
    request_id: str,
    service_roles: frozenset[str] = frozenset(),
    is_admin_project: bool = True,
) -> RequestContext:
    creds = credentials(
        user_id, project_id, roles, service_roles, is_admin_project=is_admin_project, is_admin=False
    )
    return RequestContext(
        user_id=user_id,
        project_id=project_id,
        roles=roles,
        request_id=request_id,
        policy=policy,
        service_roles=service_roles,
        is_admin_project=is_admin_project,
        is_admin=policy.check("context_is_admin", creds, project_id),
    )


def role_set(header: str) -> frozenset[str]:
    return frozenset(r.strip().lower() for r in header.split(",") if r.strip())


def noauth_context(
    headers: Headers, settings: Settings, policy: Policy, request_id: str
) -> RequestContext:
    token = headers.get("x-auth-token")
    if not token:
        raise Unauthorized("Authentication required: send X-Auth-Token <user>:<project>.")
    user_id, sep, project_id = token.partition(":")
    if not sep:
        project_id = user_id
    if not project_id:
        raise Unauthorized("The auth token names no project: expected <user>:<project>.")
    if "x-roles" in headers:
        roles = role_set(headers["x-roles"])
    elif user_id in settings.admin_users:
        roles = frozenset({ADMIN, MEMBER, READER})
    else:
        roles = frozenset({MEMBER, READER})
    return new_context(
        policy, user_id=user_id, project_id=project_id, roles=roles, request_id=request_id
    )
