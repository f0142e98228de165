"""Who is calling: the request context, built by the configured auth strategy.

`noauth` reads `X-Auth-Token: <user>:<project>` as Cinder's NoAuthMiddleware does (no colon:
the project is the user). Roles come from `X-Roles` when present; otherwise users listed in
`admin_users` are admins and everyone else is member and reader.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import Headers

from cinderflow.api.errors import Unauthorized
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

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles


def noauth_context(headers: Headers, settings: Settings, request_id: str) -> RequestContext:
    token = headers.get("x-auth-token")
    if not token:
        raise Unauthorized("Authentication required: send X-Auth-Token <user>:<project>.")
    user_id, sep, project_id = token.partition(":")
    if not sep:
        project_id = user_id
    if not project_id:
        raise Unauthorized("The auth token names no project: expected <user>:<project>.")
    if "x-roles" in headers:
        roles = frozenset(r.strip().lower() for r in headers["x-roles"].split(",") if r.strip())
    elif user_id in settings.admin_users:
        roles = frozenset({ADMIN, MEMBER, READER})
    else:
        roles = frozenset({MEMBER, READER})
    return RequestContext(
        user_id=user_id, project_id=project_id, roles=roles, request_id=request_id
    )
