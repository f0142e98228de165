"""`GET /openapi.json`: built from the route registry and its pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema

from cinderflow.api.errors import fault_name
from cinderflow.api.microversions import MAX_VERSION, MIN_VERSION
from cinderflow.api.routing import PREFIX, Endpoint, Router

REF = "#/components/schemas/{model}"
NO_NUL = "^[^\\u0000]*$"

FAULTS = {
    400: "invalid input, or a state that does not allow the request",
    401: "no or an invalid token",
    403: "the policy does not allow it",
    404: "no such resource (or not visible to the caller), or not at this microversion",
    406: "a microversion outside 3.0 to the maximum",
    409: "another operation owns the resource, or a name is taken",
    413: "over quota, or a body over 112 KiB",
    415: "a body that is not JSON",
    503: "the workflow service or a backend is unavailable; retry",
}
"""Every status a route can answer besides its success (each a Cinder fault body)."""
FAULT_SCHEMA = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
    },
}


class ValidatorSchema(GenerateJsonSchema):
    """Schemas that say what the validators do: a dict whose keys must match a pattern takes
    no other keys (pydantic omits `additionalProperties: false` beside `patternProperties`)."""

    def str_schema(self, schema: core_schema.StringSchema) -> JsonSchemaValue:
        """No string may hold U+0000 (the API refuses it everywhere)."""
        generated = super().str_schema(schema)
        generated.setdefault("pattern", NO_NUL)
        return generated

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        generated = super().dict_schema(schema)
        if "patternProperties" in generated:
            generated.setdefault("additionalProperties", False)
        return generated


def build(router: Router) -> dict[str, Any]:
    models: set[type[BaseModel]] = set()
    for endpoint in router.endpoints:
        models.update(m for m in (endpoint.body, endpoint.response) if m is not None)
    keyed = [(model, "validation") for model in sorted(models, key=lambda m: m.__name__)]
    refs, schemas = models_json_schema(  # type: ignore[arg-type]
        keyed, ref_template=REF, schema_generator=ValidatorSchema
    )
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
        "components": {"schemas": _standard(schemas.get("$defs", {}))},
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
    for code, when in FAULTS.items():
        operation["responses"].setdefault(
            str(code),
            {
                "description": f"Cinder fault `{fault_name(code)}`: {when}",
                "content": {"application/json": {"schema": FAULT_SCHEMA}},
            },
        )
    return operation


def _add_action(operation: dict[str, Any], endpoint: Endpoint, refs: dict[Any, Any]) -> None:
    """Several actions share `POST .../action`: their bodies become a oneOf."""
    content = operation["requestBody"]["content"]["application/json"]
    schema = content["schema"]
    branches = schema.get("oneOf", [schema])
    branch = refs[(endpoint.body, "validation")]
    if branch in branches:  # the same action again, for another microversion range
        return
    content["schema"] = {"oneOf": [*branches, branch]}
    operation["summary"] += f"; {endpoint.action}: {endpoint.summary}"


CONSTRAINTS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}
"""pydantic writes a bound it cannot place inside a BeforeValidator's schema under its own name
(`ge`); JSON Schema's name is `minimum`."""


def _standard(schema: Any) -> Any:
    if isinstance(schema, dict):
        numeric = schema.get("type") in ("integer", "number")
        return {(CONSTRAINTS.get(k, k) if numeric else k): _standard(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_standard(v) for v in schema]
    return schema


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
