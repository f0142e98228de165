"""The API's text and shape checks, on their own: what reaches a handler is Unicode a
database can store, nested within bounds, and carried by Temporal's converter."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from cinderflow.api.errors import BadRequest
from cinderflow.api.handover import check_carried
from cinderflow.api.validation import check_document, check_query_text


class Carried(BaseModel):
    value: dict[str, Any]


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


def test_an_input_the_converter_cannot_decode_is_refused_before_it_is_sent() -> None:
    check_carried(Carried(value=deep(10)))
    for levels in (220, 300):  # encodes but does not decode (pydantic-core: 200); neither
        with pytest.raises(BadRequest, match="cannot be carried"):
            check_carried(Carried(value=deep(levels)))


@pytest.mark.parametrize(
    "text",
    [r'{"\ud800": 1}', r"{'\udfff': 'v'}", r"x\udbff", r"\U0000d800", "nul\x00"],
)
def test_query_texts_refused(text: str) -> None:
    with pytest.raises(BadRequest):
        check_query_text(text)


@pytest.mark.parametrize(
    "text", [r'{"\ud83d\ude00": 1}', r"\u00e9", "plain", "ümlaut 鍵", r'{"a": "\\ud800"}']
)
def test_query_texts_taken(text: str) -> None:
    check_query_text(text)


def test_documents() -> None:
    check_document({"a": ["b", {"c": "d"}], "e": deep(30)})
    for bad in ({"\ud800": 1}, ["ok", {"k": "v\udc00"}], deep(40), {"x": "a\x00"}):
        with pytest.raises(BadRequest):
            check_document(bad)
