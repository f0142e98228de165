"""Declarative routes with microversion ranges, as Cinder's versioned controller methods.

    @router.route("GET", "/attachments", since=mv.NEW_ATTACH)
    async def index(req: ApiRequest) -> Response: ...

A request whose version is outside every range of the matched path and method gets 404 (Cinder's
behaviour). Paths are written without the project: `/v3/{project_id}/...` is folded into them by
the middleware, so every route exists in both forms. The registry also feeds `/openapi.json`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cinderflow.api import idempotency, policy
from cinderflow.api.context import RequestContext
from cinderflow.api.errors import NOT_FOUND, BadRequest, NotFound
from cinderflow.api.microversions import MAX_VERSION, MIN_VERSION, APIVersion
from cinderflow.api.validation import check_query_text, json_body, validate

if TYPE_CHECKING:
    from cinderflow.api.app import ApiServices

Handler = Callable[["ApiRequest"], Awaitable[Response]]
PREFIX = "/v3"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    since: APIVersion = MIN_VERSION
    until: APIVersion = MAX_VERSION
    status: int = 200
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    summary: str = ""
    action: str | None = None
    """For `POST .../action` routes: the body key that selects this handler."""

    def serves(self, version: APIVersion) -> bool:
        return self.since <= version <= self.until


class ApiRequest:
    """What a handler gets: the request, caller, version, validated body, shared services."""

    def __init__(self, request: Request, body: BaseModel | None) -> None:
        self.request = request
        self.body = body
        self.ctx: RequestContext = request.state.context
        self.version: APIVersion = request.state.version
        self.services: ApiServices = request.app.state.services
        self.path_params: dict[str, Any] = request.path_params
        self.query = request.query_params
        self._gates: dict[str, bool] = {}
        self._allowed: dict[str, bool] = {}

    def at_least(self, version: str) -> bool:
        """The request's microversion is `version` or later (decided once per request and
        version: a list renders thousands of gated fields)."""
        passed = self._gates.get(version)
        if passed is None:
            passed = self._gates[version] = self.version >= APIVersion.parse(version)
        return passed

    def allowed(self, action: str) -> bool:
        """The caller may `action` (a policy rule with no target project), decided once per
        request."""
        passed = self._allowed.get(action)
        if passed is None:
            passed = self._allowed[action] = policy.allowed(self.ctx, action)
        return passed

    @property
    def base_url(self) -> str:
        """Public endpoint root (no trailing slash), for links."""
        configured = self.services.settings.public_endpoint
        return (configured or str(self.request.base_url)).rstrip("/")

    def link(self, collection: str, ident: str) -> list[dict[str, str]]:
        project = self.ctx.project_id
        return [
            {"rel": "self", "href": f"{self.base_url}/v3/{project}/{collection}/{ident}"},
            {"rel": "bookmark", "href": f"{self.base_url}/{project}/{collection}/{ident}"},
        ]


class Router:
    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        since: str | None = None,
        until: str | None = None,
        status: int = 200,
        body: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        action: str | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    method=method,
                    path=path,
                    handler=handler,
                    since=APIVersion.parse(since) if since else MIN_VERSION,
                    until=APIVersion.parse(until) if until else MAX_VERSION,
                    status=status,
                    body=body,
                    response=response,
                    summary=(handler.__doc__ or "").strip().split("\n")[0],
                    action=action,
                )
            )
            return handler

        return register

    def action(
        self,
        path: str,
        name: str,
        *,
        body: type[BaseModel],
        since: str | None = None,
        until: str | None = None,
        status: int = 202,
        response: type[BaseModel] | None = None,
    ) -> Callable[[Handler], Handler]:
        """`POST <path>` with a body `{"<name>": ...}`; `body` validates the whole body."""
        return self.route(
            "POST",
            path,
            since=since,
            until=until,
            status=status,
            body=body,
            response=response,
            action=name,
        )

    def include(self, other: Router) -> None:
        self.endpoints.extend(other.endpoints)

    def starlette_routes(self) -> list[Route]:
        by_path: dict[str, list[Endpoint]] = defaultdict(list)
        for endpoint in self.endpoints:
            by_path[endpoint.path].append(endpoint)
        # Literal segments before parameters: /volumes/detail must win over /volumes/{id}.
        ordered = sorted(by_path.items(), key=lambda item: item[0].count("{"))
        return [
            Route(PREFIX + path, _dispatcher(endpoints), methods=_methods(endpoints))
            for path, endpoints in ordered
        ]


def _methods(endpoints: list[Endpoint]) -> list[str]:
    return sorted({e.method for e in endpoints})


def _dispatcher(endpoints: list[Endpoint]) -> Callable[[Request], Awaitable[Response]]:
    async def dispatch(request: Request) -> Response:
        request.state.route = endpoints[0].path  # for the request log and metrics
        method = "GET" if request.method == "HEAD" else request.method
        version: APIVersion = request.state.version
        parts = [str(v) for v in request.path_params.values()]
        parts += [text for pair in request.query_params.multi_items() for text in pair]
        for part in parts:
            check_query_text(part)
        candidates = [e for e in endpoints if e.method == method]
        data: Any = None
        if any(e.action for e in candidates):
            data = await json_body(request)
            name = _action_name(data, {e.action for e in candidates if e.action})
            candidates = [e for e in candidates if e.action == name]
        for endpoint in candidates:
            if endpoint.serves(version):
                if endpoint.body and data is None:
                    data = await json_body(request)
                body = validate(endpoint.body, data) if endpoint.body else None
                if method == "POST" and idempotency.HEADER in request.headers:
                    return await _once(request, endpoint, body, data)
                return await endpoint.handler(ApiRequest(request, body))
        raise NotFound(NOT_FOUND)

    return dispatch


async def _once(
    request: Request, endpoint: Endpoint, body: BaseModel | None, data: Any
) -> Response:
    """A POST with an Idempotency-Key: the first response under the key, or this one's."""
    services = request.app.state.services
    guard = idempotency.Guard(
        services.db,
        request,
        request.state.context.project_id,
        services.settings,
        await idempotency.secret_of(request.app.state, services.settings),
    )
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return await guard.run(
        lambda: endpoint.handler(ApiRequest(request, body)),
        path,
        str(request.state.version),
        data,
    )


def _action_name(data: Any, known: set[str]) -> str:
    """The first body key naming a known action (Cinder's rule); 400 if there is none."""
    if not isinstance(data, dict) or not data:
        raise BadRequest("Invalid input: the action body must be a JSON object naming an action.")
    for key in data:
        if key in known:
            return key
    raise BadRequest(
        f"There is no such action: {next(iter(data))}. Verify the request body and "
        "Content-Type header and try again."
    )
