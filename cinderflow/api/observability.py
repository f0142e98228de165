"""One log line and one metric observation per request (the outermost middleware, so it
sees the status of every answer, faults of the middleware below included).

    INFO cinderflow.api.access: request_id=req-… project=… user=… method=POST
    route=/volumes code=202 ms=12.4

`route` is the matched path template (`/volumes/{volume_id}/action`), never the path itself:
ids would make every volume its own metric series, and a log of templates is greppable.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cinderflow import metrics

log = logging.getLogger("cinderflow.api.access")
UNMATCHED = "unmatched"
OWN_ROUTES = frozenset({"/", "/v3", "/v3/", "/openapi.json", "/metrics"})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Any other token a client sends is `other`: a label per invented method would be a metric
series per request."""
NOTHING_SENT = 499
"""The code logged when no response went out (the client went away first), nginx's."""


class RequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code = NOTHING_SENT

        async def sending(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        path = scope["path"]
        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            state = scope.get("state", {})
            route = state.get("route") or (path if path in OWN_ROUTES else UNMATCHED)
            method = scope["method"] if scope["method"] in METHODS else "other"
            if route != "/metrics":
                metrics.observe_request(route, method, code, seconds)
            context = state.get("context")
            log.info(
                "request_id=%s project=%s user=%s method=%s route=%s code=%d ms=%.1f",
                state.get("request_id", "-"),
                getattr(context, "project_id", "-"),
                getattr(context, "user_id", "-"),
                method,
                route,
                code,
                seconds * 1000,
            )
