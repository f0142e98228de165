"""`/volumes/{id}/metadata` and its error paths."""

from __future__ import annotations

import pytest

from tests.helpers import Api, assert_fault, new_project


@pytest.fixture
def volume_id(api: Api) -> str:
    return api.create_volume(metadata={"a": "1", "b": "2"})["id"]


def test_metadata_lifecycle(api: Api, volume_id: str) -> None:
    base = f"/volumes/{volume_id}/metadata"
    assert api.get(base).json() == {"metadata": {"a": "1", "b": "2"}}
    merged = api.post(base, {"metadata": {"b": "3", "c": "4"}})
    assert merged.status_code == 200
    assert merged.json() == {"metadata": {"a": "1", "b": "3", "c": "4"}}
    replaced = api.put(base, {"metadata": {"z": "9"}})
    assert replaced.json() == {"metadata": {"z": "9"}}
    assert api.get(f"{base}/z").json() == {"meta": {"z": "9"}}
    assert api.put(f"{base}/z", {"meta": {"z": "10"}}).json() == {"meta": {"z": "10"}}
    assert api.put(f"{base}/new", {"meta": {"new": "x"}}).status_code == 200
    assert api.delete(f"{base}/z").status_code == 200
    assert api.get(base).json() == {"metadata": {"new": "x"}}
    assert (api.volume(volume_id) or {})["metadata"] == {"new": "x"}


@pytest.mark.parametrize(
    ("method", "suffix", "body", "code", "fragment"),
    [
        ("GET", "/missing", None, 404, "Metadata item was not found"),
        ("DELETE", "/missing", None, 404, "Metadata item was not found"),
        ("PUT", "/a", {"meta": {"b": "1"}}, 400, "Request body and URI mismatch"),
        ("PUT", "/a", {"meta": {"a": "1", "b": "2"}}, 400, "too many items"),
        ("PUT", "/a", {"meta": {"a": 1}}, 400, "meta.a"),
        ("POST", "", {"metadata": {"k": None}}, 400, "metadata.k"),
        ("POST", "", {"metadata": {"k": "v"}, "x": 1}, 400, "'x' was unexpected"),
        ("PUT", "", {"meta": {"k": "v"}}, 400, "'metadata' is a required property"),
        ("POST", "", {"metadata": {"k" * 256: "v"}}, 400, "metadata"),
    ],
)
def test_metadata_errors(
    api: Api, volume_id: str, method: str, suffix: str, body: object, code: int, fragment: str
) -> None:
    response = api.request(method, f"/volumes/{volume_id}/metadata{suffix}", json=body)
    assert_fault(response, code, fragment)
    assert api.get(f"/volumes/{volume_id}/metadata").json() == {"metadata": {"a": "1", "b": "2"}}


def test_metadata_of_unknown_or_foreign_volume_is_404(api: Api, volume_id: str) -> None:
    assert_fault(api.get("/volumes/nope/metadata"), 404, "Volume nope could not be found.")
    stranger = api.as_user("bob", project=new_project())
    assert_fault(stranger.get(f"/volumes/{volume_id}/metadata"), 404)
    assert_fault(stranger.post(f"/volumes/{volume_id}/metadata", {"metadata": {"x": "1"}}), 404)


def test_reader_may_read_but_not_write_metadata(api: Api, volume_id: str) -> None:
    reader = api.as_user("rita", roles="reader")
    assert reader.get(f"/volumes/{volume_id}/metadata").status_code == 200
    response = reader.post(f"/volumes/{volume_id}/metadata", {"metadata": {"x": "1"}})
    assert_fault(response, 403, "volume:create_volume_metadata")
