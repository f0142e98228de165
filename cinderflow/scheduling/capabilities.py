"""Matching a volume type's extra specs against a backend's capabilities (Cinder's
CapabilitiesFilter and `extra_specs_ops`)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

TRUE = frozenset({"1", "t", "true", "on", "y", "yes"})


def _truth(value: Any) -> bool:
    return str(value).strip().lower() in TRUE


OPS: dict[str, Callable[[Any, str], bool]] = {
    "=": lambda x, y: float(x) >= float(y),
    "<in>": lambda x, y: y in str(x),
    "<is>": lambda x, y: _truth(x) is _truth(y),
    "==": lambda x, y: float(x) == float(y),
    "!=": lambda x, y: float(x) != float(y),
    ">=": lambda x, y: float(x) >= float(y),
    "<=": lambda x, y: float(x) <= float(y),
    "s==": lambda x, y: operator.eq(str(x), y),
    "s!=": lambda x, y: operator.ne(str(x), y),
    "s<": lambda x, y: operator.lt(str(x), y),
    "s<=": lambda x, y: operator.le(str(x), y),
    "s>": lambda x, y: operator.gt(str(x), y),
    "s>=": lambda x, y: operator.ge(str(x), y),
}


def match(value: Any, requirement: str | None) -> bool:
    """Does one capability value meet one extra-spec requirement (e.g. `<is> True`, `>= 10`,
    `<or> a <or> b`, or a plain value compared as is)?"""
    if requirement is None:
        return value is None
    words = requirement.split()
    op = words.pop(0) if words else None
    if op != "<or>" and op not in OPS:
        return value == requirement or str(value) == requirement
    if value is None:
        return False
    if op == "<or>":
        return str(value) in words[0::2]
    if not words:
        return False
    try:
        return bool(OPS[op](value, words[0]))  # type: ignore[index]
    except (ValueError, TypeError):
        return False


def unmet(capabilities: Mapping[str, Any], extra_specs: Mapping[str, str]) -> str | None:
    """The first extra spec the capabilities do not meet, or None. Scoped keys other than
    `capabilities:` belong to drivers or the API (`RESKEY:...`) and are not capabilities."""
    for key, requirement in extra_specs.items():
        scope = key.split(":")
        if len(scope) > 1 and scope[0] != "capabilities":
            continue
        path = scope[1:] if scope[0] == "capabilities" else scope
        value: Any = capabilities
        for part in path:
            if not isinstance(value, Mapping) or part not in value:
                return f"no capability {':'.join(path)}"
            value = value[part]
        values = value if isinstance(value, list) else [value]
        if not any(match(v, requirement) for v in values):
            return f"{key}={value!r} does not meet {requirement!r}"
    return None
