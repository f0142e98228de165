"""What every request goes through before its handler (a pure ASGI middleware):

1. request ids (`x-openstack-request-id`, `x-compute-request-id`);
2. under `/v3`: microversion negotiation and the `OpenStack-API-Version`/`Vary` response headers;
3. `/v3/<project_id>/<rest>` folded into `/v3/<rest>` (Cinder registers every route twice);
4. auth (not for the version documents): noauth, or keystonemiddleware's auth_token
   (api/keystone.py); then the URL-project check;
5. the last-resort error boundary: an unexpected exception is a 500 fault, never a traceback
   to the client; a client that disconnected mid-request is logged quietly (not an error).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cinderflow.api.context import CALLER, noauth_context
from cinderflow.api.errors import GENERIC_500, ApiError, BadRequest, fault_body
from cinderflow.api.keystone import KeystoneAuth
from cinderflow.api.microversions import HEADER, LEGACY_HEADER, MIN_VERSION, negotiate
from cinderflow.api.policy import Policy
from cinderflow.settings import Settings

log = logging.getLogger(__name__)

PROJECT_ID = re.compile(r"^/v3/([0-9a-f\-]+)(/.+)$")
"""Cinder's default `project_id_regex`; a project in the URL is followed by a resource."""
VERSION_DOCUMENTS = frozenset({"/", "/v3", "/v3/"})


class CinderMiddleware:
    def __init__(
        self, app: ASGIApp, settings: Settings, policy: Policy, keystone: KeystoneAuth | None
    ) -> None:
        self.app = app
        self.settings = settings
        self.policy = policy
        self.keystone = keystone
        """Set for auth_strategy keystone (made with the app: a bad setting stops start-up)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req-{uuid.uuid4()}"
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["version"] = MIN_VERSION
        extra = [
            (b"x-openstack-request-id", request_id.encode()),
            (b"x-compute-request-id", request_id.encode()),
        ]
        path: str = scope["path"]
        if path == "/v3" or path.startswith("/v3/"):
            extra.append((b"vary", HEADER.encode()))
            version_header = f"volume {MIN_VERSION}"
            try:
                state["version"] = negotiate(
                    Headers(scope=scope).get(HEADER), Headers(scope=scope).get(LEGACY_HEADER)
                )
                version_header = f"volume {state['version']}"
                if path not in VERSION_DOCUMENTS:
                    await self._authenticate(scope, state, request_id)
            except ApiError as error:
                extra.append((HEADER.encode(), version_header.encode()))
                await _send_fault(send, error.code, error.body(), error.headers, extra)
                return
            extra.append((HEADER.encode(), version_header.encode()))

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:
            # the client went away mid-request: nobody to answer, nothing went wrong here
            log.info("client disconnected during %s %s (%s)", scope["method"], path, request_id)
        except Exception:
            log.exception("unhandled error in %s %s (%s)", scope["method"], path, request_id)
            if not started:
                await _send_fault(send, 500, fault_body(500, GENERIC_500), {}, extra)

    async def _authenticate(self, scope: Scope, state: dict[str, Any], request_id: str) -> None:
        url_project = None
        sent = Request(scope)  # as the client sent it, before the project is folded away
        match = PROJECT_ID.match(scope["path"])
        if match:
            url_project, rest = match.group(1), match.group(2)
            scope["path"] = "/v3" + rest
            scope["raw_path"] = scope["path"].encode()
        headers = Headers(scope=scope)
        if self.keystone is not None:  # may call Keystone: off the event loop
            context = await run_in_threadpool(
                self.keystone.context,
                headers,
                sent.method,
                sent.url.path,
                sent.url.query,
                request_id,
            )
        else:
            context = noauth_context(headers, self.settings, self.policy, request_id)
        if url_project is not None and url_project != context.project_id:
            raise BadRequest("Malformed request url")
        state["context"] = context
        CALLER.set(context)


async def _send_fault(
    send: Send, code: int, body: dict[str, Any], headers: dict[str, str], extra: list
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *((k.lower().encode(), v.encode()) for k, v in headers.items()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
