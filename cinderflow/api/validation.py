"""Request bodies: JSON parsing and pydantic validation turned into Cinder's 400 messages."""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import Request

from cinderflow.api.errors import BadRequest, RequestTooLarge, UnsupportedMediaType

M = TypeVar("M", bound=BaseModel)

DB_MAX_INT = 0x7FFFFFFF
TRUE_STRINGS = frozenset({"1", "t", "true", "on", "y", "yes"})
FALSE_STRINGS = frozenset({"0", "f", "false", "off", "n", "no"})


class StrictModel(BaseModel):
    """Request models reject unknown keys."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _int_or_digits(value: Any) -> Any:
    """Cinder accepts an integer or a string of digits; never a bool or a float."""
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int):
        return value
    raise ValueError("must be an integer")


def parse_bool(value: Any) -> bool:
    """Cinder's `strutils.bool_from_string(strict=True)` for bodies and query strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in TRUE_STRINGS:
            return True
        if lowered in FALSE_STRINGS:
            return False
    raise ValueError(f"'{value}' is not a valid boolean value")


PositiveInt = Annotated[int, BeforeValidator(_int_or_digits), Field(ge=1, le=DB_MAX_INT)]
Boolean = Annotated[bool, BeforeValidator(parse_bool)]
Name = Annotated[str, Field(max_length=255)]
MetadataKey = Annotated[str, Field(min_length=1, max_length=255)]
MetadataValue = Annotated[str, Field(max_length=255)]
Metadata = dict[MetadataKey, MetadataValue]


MAX_BODY_BYTES = 114688
"""Cinder's `osapi_max_request_body_size` default."""


async def json_body(request: Request) -> Any:
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if content_type and not (content_type == "application/json" or content_type.endswith("+json")):
        raise UnsupportedMediaType(f"Unsupported Content-Type {content_type}")
    declared = request.headers.get("content-length", "0")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise RequestTooLarge("Request is too large.")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise RequestTooLarge("Request is too large.")
    if not raw.strip():
        raise BadRequest("Malformed request body: the body is empty")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("Malformed request body") from None
    if has_nul(data):
        raise BadRequest("Invalid input: NUL characters are not allowed.")
    return data


def has_nul(data: Any) -> bool:
    """True if any string (key or value) in a parsed JSON document contains U+0000."""
    todo = [data]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return False


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise BadRequest(describe(error.errors()[0], data)) from None


def describe(error: ErrorDetails, data: Any) -> str:
    loc = [str(part) for part in error["loc"]]
    where = ".".join(loc)
    if error["type"] == "extra_forbidden":
        parent = f" in {'.'.join(loc[:-1])}" if len(loc) > 1 else ""
        return f"Additional properties are not allowed ('{loc[-1]}' was unexpected){parent}."
    if error["type"] == "missing":
        return f"Invalid input for field/attribute {where}. '{loc[-1]}' is a required property."
    if error["type"] == "model_type" and not loc:
        return f"Invalid input: the body must be a JSON object, not {type(data).__name__}."
    message = error["msg"].removeprefix("Value error, ")
    value = json.dumps(error.get("input"), default=str)
    return f"Invalid input for field/attribute {where}. Value: {value}. {message}."
