"""Request bodies: JSON parsing and pydantic validation turned into Cinder's 400 messages."""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
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


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("must not be null")
    return value


NOT_BLANK = {"pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"}
"""Schema of a text that must hold more than whitespace (and no NUL), for `json_schema_extra`."""

NotNull = BeforeValidator(_not_null)
"""For a field that may be left out but, when sent, must not be null (type it
`T | SkipJsonSchema[None] = None`: the schema then says T, not nullable)."""

PositiveInt = Annotated[int, BeforeValidator(_int_or_digits), Field(ge=1, le=DB_MAX_INT)]
Boolean = Annotated[bool, BeforeValidator(parse_bool)]
Name = Annotated[str, Field(max_length=255)]
MetadataKey = Annotated[str, Field(min_length=1, max_length=255)]
MetadataValue = Annotated[str, Field(max_length=255)]
Metadata = dict[MetadataKey, MetadataValue]


MAX_BODY_BYTES = 114688
"""Cinder's `osapi_max_request_body_size` default."""


def _not_a_number(name: str) -> Any:
    """`NaN`, `Infinity`: Python's json takes them, JSON and PostgreSQL do not."""
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise ValueError(f"{text} is out of range")
    return value


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
        data = json.loads(raw, parse_constant=_not_a_number, parse_float=_finite)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("Malformed request body") from None
    check_document(data)
    return data


MAX_BODY_DEPTH = 32
"""JSON nested deeper is refused whole: no body Cinder defines nests more than a few levels,
and a deep one costs every layer that walks it (pydantic-core stops at 200)."""
MAX_FREE_FORM_DEPTH = 4
"""Free-form objects (a connector, scheduler hints) nest at most this deep: os-brick's
connectors are two levels (lists of WWPNs in a dict)."""
MAX_FREE_FORM_BYTES = 16384
"""The largest free-form object, as JSON."""


def check_text(text: str) -> None:
    """400 for a string a database, a log line or a JSON encoder cannot carry: U+0000, or a
    lone UTF-16 surrogate (`"\\ud800"` is valid JSON but not Unicode text)."""
    if "\x00" in text:
        raise BadRequest("Invalid input: NUL characters are not allowed.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(
            "Invalid input: the text is not valid Unicode (a lone surrogate)."
        ) from None


UNESCAPED = r"(?<!\\)(?:\\\\)*"
"""An escape's backslash is itself unescaped: preceded by an even number of backslashes."""
LONE_SURROGATE_ESCAPE = re.compile(
    UNESCAPED + r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|" + UNESCAPED + r"(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    r"|" + UNESCAPED + r"\\U0000[dD][89a-fA-F][0-9a-fA-F]{2}"
)
"""A lone surrogate written as a JSON or Python escape (a high half not followed by a low
one, a low half not after a high one): what a query filter decodes into later."""


def check_query_text(text: str) -> None:
    """`check_text` for a query value, and its escapes too: a filter such as
    `metadata={"\\ud800": 1}` is refused before the route's policy or database work."""
    check_text(text)
    if "\\" in text and LONE_SURROGATE_ESCAPE.search(text):
        raise BadRequest("Invalid input: the text is not valid Unicode (a lone surrogate).")


def check_document(data: Any) -> None:
    """400 unless every string of a parsed JSON document (keys and values) is `check_text`
    clean and it nests at most MAX_BODY_DEPTH levels; before any handler, policy or database
    work sees it."""
    todo: list[tuple[Any, int]] = [(data, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, str):
            check_text(item)
        elif isinstance(item, dict | list):
            if depth >= MAX_BODY_DEPTH:
                raise BadRequest(
                    f"Invalid input: the body nests deeper than {MAX_BODY_DEPTH} levels."
                )
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            todo.extend((child, depth + 1) for child in children)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _bounded(value: dict[str, Any]) -> dict[str, Any]:
    if _depth(value) > MAX_FREE_FORM_DEPTH:
        raise ValueError(f"must not nest deeper than {MAX_FREE_FORM_DEPTH} levels")
    if len(json.dumps(value)) > MAX_FREE_FORM_BYTES:
        raise ValueError(f"must not be larger than {MAX_FREE_FORM_BYTES} bytes as JSON")
    return value


FreeForm = Annotated[dict[str, Any], AfterValidator(_bounded)]
"""A client-shaped object cinderflow stores and passes on (a connector, scheduler hints):
any keys, bounded in depth and size, so that it always fits a workflow's input."""

CONNECTOR_COLUMNS = ("host", "mountpoint")
"""Connector keys cinderflow copies into the attachment's columns (VARCHAR 255)."""


def _connector(value: dict[str, Any]) -> dict[str, Any]:
    for key in CONNECTOR_COLUMNS:
        text = value.get(key)
        if text is not None and not (isinstance(text, str) and len(text) <= 255):
            raise ValueError(f"'{key}' must be a string of at most 255 characters")
    if "mode" in value and value["mode"] not in ("rw", "ro"):
        raise ValueError("'mode' must be 'rw' or 'ro'")
    return value


Connector = Annotated[FreeForm, AfterValidator(_connector)]
"""A connector: free-form, but the keys cinderflow stores (`host`, `mountpoint`, `mode`, …)
typed, so that no value can fail the attach workflow's database write."""


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
