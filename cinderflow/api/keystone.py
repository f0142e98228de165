"""`auth_strategy = keystone`: keystonemiddleware's `auth_token` in front of the API.

auth_token is a WSGI middleware; the API is ASGI. Each request's headers are handed to the
real middleware as a WSGI environ, around an inner WSGI app that only records the environ the
middleware passes on: the token checks, the caching, the stripping of forged identity headers
(`X-Roles` and friends sent by a client) and the service-token handling are all
keystonemiddleware's own. It may call Keystone, so it runs in a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from keystonemiddleware import auth_token
from starlette.datastructures import Headers

from cinderflow.api.context import RequestContext, new_context, role_set
from cinderflow.api.errors import ServiceUnavailable, Unauthorized
from cinderflow.api.policy import Policy
from cinderflow.settings import Settings

CONFIRMED = "Confirmed"


def authtoken_options(settings: Settings) -> dict[str, Any]:
    """auth_token's options (its `[keystone_authtoken]` section) from the settings: the
    service user that validates tokens, then any `keystone_authtoken` extras over them."""
    password = settings.keystone_password.get_secret_value() if settings.keystone_password else ""
    options: dict[str, Any] = {
        "auth_type": "password",
        "auth_url": settings.keystone_auth_url,
        "www_authenticate_uri": settings.keystone_auth_url,
        "username": settings.keystone_username,
        "password": password,
        "project_name": settings.keystone_project_name,
        "user_domain_name": settings.keystone_user_domain_name,
        "project_domain_name": settings.keystone_project_domain_name,
        "interface": settings.keystone_interface,
        "delay_auth_decision": False,
        "log_name": "cinderflow.keystone",
    }
    options.update(settings.keystone_authtoken)
    return options


class KeystoneAuth:
    def __init__(self, settings: Settings, policy: Policy) -> None:
        if not settings.keystone_auth_url:
            raise ValueError("auth_strategy keystone needs keystone_auth_url")
        self.policy = policy
        self._seen = threading.local()
        self.protocol = auth_token.AuthProtocol(self._record, authtoken_options(settings))

    def _record(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        """The inner app: what auth_token let through, for the thread that asked."""
        self._seen.environ = environ
        start_response("204 No Content", [])
        return [b""]

    def context(
        self, headers: Headers, method: str, path: str, query: str, request_id: str
    ) -> RequestContext:
        """The caller's context from a validated token (blocking: may call Keystone);
        Unauthorized, with Keystone's `WWW-Authenticate`, when auth_token refuses, and
        ServiceUnavailable when it cannot reach Keystone. The method, path and query are the
        request's own: application credentials' access rules are checked against them."""
        environ = _environ(headers, method, path, query)
        self._seen.environ = None
        answer: dict[str, Any] = {}

        def start_response(status: str, response_headers: list, exc_info: Any = None) -> None:
            answer["status"], answer["headers"] = status, dict(response_headers)

        b"".join(self.protocol(environ, start_response))
        passed: Mapping[str, Any] | None = self._seen.environ
        if passed is None and str(answer.get("status", "")).startswith("5"):
            raise ServiceUnavailable(
                "The identity service cannot validate tokens now; retry shortly."
            )
        if passed is None or passed.get("HTTP_X_IDENTITY_STATUS") != CONFIRMED:
            challenge = answer.get("headers", {}).get("WWW-Authenticate")
            raise Unauthorized(
                "The request you have made requires authentication.",
                headers={"WWW-Authenticate": challenge} if challenge else {},
            )
        project = passed.get("HTTP_X_PROJECT_ID")
        if not project:
            raise Unauthorized("A project-scoped token is required.")
        service_roles = (
            role_set(passed.get("HTTP_X_SERVICE_ROLES") or "")
            if passed.get("HTTP_X_SERVICE_IDENTITY_STATUS") == CONFIRMED
            else frozenset()
        )
        return new_context(
            self.policy,
            user_id=passed.get("HTTP_X_USER_ID") or "",
            project_id=project,
            roles=role_set(passed.get("HTTP_X_ROLES") or ""),
            request_id=request_id,
            service_roles=service_roles,
            is_admin_project=passed.get("HTTP_X_IS_ADMIN_PROJECT", "True") == "True",
        )


def _environ(headers: Headers, method: str, path: str, query: str) -> dict[str, Any]:
    """A WSGI environ of the request without its body (auth_token reads the headers, and
    the method and path for access rules)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "cinderflow",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": None,
        "wsgi.errors": None,
    }
    for name, value in headers.items():
        key = "HTTP_" + name.upper().replace("-", "_")
        if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            environ[key] = value
    return environ
