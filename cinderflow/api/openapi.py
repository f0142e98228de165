"""`GET /openapi.json`: built from the route registry and its pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from cinderflow.api.errors import FAULT_NAMES
from cinderflow.api.microversions import MAX_VERSION, MIN_VERSION
from cinderflow.api.routing import PREFIX, Endpoint, Router

REF = "#/components/schemas/{model}"


def build(router: Router) -> dict[str, Any]:
    models: set[type[BaseModel]] = set()
    for endpoint in router.endpoints:
        models.update(m for m in (endpoint.body, endpoint.response) if m is not None)
    keyed = [(model, "validation") for model in sorted(models, key=lambda m: m.__name__)]
    refs, schemas = models_json_schema(keyed, ref_template=REF)  # type: ignore[arg-type]
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in router.endpoints:
        operations = paths.setdefault(PREFIX + endpoint.path, {})
        method = endpoint.method.lower()
        if endpoint.action and method in operations:
            _add_action(operations[method], endpoint, refs)
        else:
            operations[method] = _operation(endpoint, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cinderflow: OpenStack Block Storage API v3",
            "version": f"{MIN_VERSION}-{MAX_VERSION}",
            "description": (
                "Cinder-compatible. Every path also exists as /v3/{project_id}/... . Send "
                "`OpenStack-API-Version: volume 3.N` to select a microversion."
            ),
        },
        "paths": paths,
        "components": {"schemas": schemas.get("$defs", {})},
    }


def _operation(endpoint: Endpoint, refs: dict[Any, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": f"{endpoint.action}: {endpoint.summary}"
        if endpoint.action
        else endpoint.summary,
        "x-openstack-microversion": {"min": str(endpoint.since), "max": str(endpoint.until)},
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_params(endpoint.path)
        ],
        "responses": {str(endpoint.status): {"description": "success"}},
    }
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(endpoint.body, "validation")]}},
        }
    if endpoint.response is not None:
        operation["responses"][str(endpoint.status)]["content"] = {
            "application/json": {"schema": refs[(endpoint.response, "validation")]}
        }
    for code in (400, 403, 404):
        operation["responses"].setdefault(
            str(code), {"description": f"Cinder fault `{FAULT_NAMES[code]}`"}
        )
    return operation


def _add_action(operation: dict[str, Any], endpoint: Endpoint, refs: dict[Any, Any]) -> None:
    """Several actions share `POST .../action`: their bodies become a oneOf."""
    content = operation["requestBody"]["content"]["application/json"]
    schema = content["schema"]
    content["schema"] = {
        "oneOf": [*schema.get("oneOf", [schema]), refs[(endpoint.body, "validation")]]
    }
    operation["summary"] += f"; {endpoint.action}: {endpoint.summary}"


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
