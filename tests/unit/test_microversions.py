"""Microversion parsing and negotiation."""

from __future__ import annotations

import pytest

from cinderflow.api.errors import BadRequest
from cinderflow.api.microversions import (
    MAX_VERSION,
    MIN_VERSION,
    APIVersion,
    VersionNotAcceptable,
    negotiate,
)


def test_ordering_and_comparison_with_strings() -> None:
    assert APIVersion(3, 9) < APIVersion(3, 10) < "3.71"
    assert APIVersion.parse("3.27") == "3.27"
    assert str(APIVersion(3, 5)) == "3.5"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, MIN_VERSION),
        ("volume latest", MAX_VERSION),
        ("volume 3.50", APIVersion(3, 50)),
        ("identity 3.0, volume 3.2", APIVersion(3, 2)),
        ("compute 2.90", MIN_VERSION),
        ("VOLUME 3.1", APIVersion(3, 1)),
    ],
)
def test_negotiate(header: str | None, expected: APIVersion) -> None:
    assert negotiate(header) == expected


def test_legacy_header_only_when_the_standard_one_is_absent() -> None:
    assert negotiate(None, "3.7") == APIVersion(3, 7)
    assert negotiate("volume 3.9", "3.7") == APIVersion(3, 9)


@pytest.mark.parametrize("bad", ["volume 3.x", "volume 3", "volume -3.1", "volume 3.01"])
def test_malformed(bad: str) -> None:
    with pytest.raises(BadRequest):
        negotiate(bad)


@pytest.mark.parametrize("outside", ["volume 3.73", "volume 2.99", "volume 4.0"])
def test_out_of_range(outside: str) -> None:
    with pytest.raises(VersionNotAcceptable):
        negotiate(outside)
