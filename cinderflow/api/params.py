"""Query-string parameters with Cinder's parsing rules and 400 messages."""

from __future__ import annotations

import ast
import json
from collections.abc import Collection
from typing import Any

from cinderflow.api.errors import BadRequest, invalid_input
from cinderflow.api.routing import ApiRequest
from cinderflow.api.validation import DB_MAX_INT, check_text, parse_bool

MAX_FILTER_LENGTH = 4096


def boolean_param(
    req: ApiRequest, name: str, default: bool = False, *, refusal: str | None = None
) -> bool:
    """A strict boolean query parameter; `refusal` is the 400's message where Cinder words
    it otherwise (`{raw}` is the value sent)."""
    raw = req.query.get(name)
    if raw is None:
        return default
    try:
        return parse_bool(raw)
    except ValueError:
        if refusal is not None:
            raise BadRequest(refusal.format(raw=raw)) from None
        raise invalid_input(f"Invalid value '{raw}' for boolean parameter {name}.") from None


def int_param(req: ApiRequest, name: str) -> int | None:
    raw = req.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise invalid_input(f"{name} param must be an integer") from None
    if value < 0:
        raise invalid_input(f"{name} param must be positive")
    if value > DB_MAX_INT:
        raise invalid_input(f"{name} param must be at most {DB_MAX_INT}")
    return value


def sort_param(req: ApiRequest, allowed: Collection[str]) -> list[tuple[str, str]]:
    """`sort=k1:asc,k2` or legacy `sort_key`/`sort_dir`; the default direction is desc."""
    if "sort" in req.query:
        pairs = []
        for item in req.query["sort"].split(","):
            key, _, direction = item.strip().partition(":")
            pairs.append((key.strip(), (direction or "desc").strip().lower()))
    else:
        keys = req.query.get("sort_key", "created_at").split(",")
        directions = req.query.get("sort_dir", "desc").split(",")
        pairs = [
            (k.strip(), (directions[i] if i < len(directions) else "desc").strip().lower())
            for i, k in enumerate(keys)
        ]
    for key, direction in pairs:
        if key not in allowed:
            raise invalid_input(f"Invalid sort key: {key}")
        if direction not in ("asc", "desc"):
            raise invalid_input(f"Invalid sort direction: {direction}")
    return pairs


def dict_param(req: ApiRequest, name: str) -> dict[str, str]:
    """A dict filter as clients send it: JSON or a Python literal (`{'k': 'v'}`)."""
    raw = req.query.get(name)
    if raw is None:
        return {}
    value: Any = None
    if len(raw) <= MAX_FILTER_LENGTH:
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError, RecursionError, MemoryError, TypeError):
                value = None
    if not isinstance(value, dict):
        raise invalid_input(f"{name} filter must be a dictionary, got {raw!r}")
    found = {str(k): str(v) for k, v in value.items()}
    for text in (*found, *found.values()):
        check_text(text)  # "\ud800" decodes from JSON, and no database takes it
    return found
