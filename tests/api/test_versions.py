"""Version documents and microversion negotiation (contract §1)."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import Api, assert_fault

VERSION_KEYS = {"id", "status", "version", "min_version", "updated", "links", "media-types"}


@pytest.mark.parametrize(("path", "code"), [("/", 300), ("/v3", 200), ("/v3/", 200)])
def test_version_documents_need_no_auth(api: Api, path: str, code: int) -> None:
    response = httpx.get(api.base_url + path)
    assert response.status_code == code
    (version,) = response.json()["versions"]
    assert set(version) == VERSION_KEYS
    assert version["id"] == "v3.0"
    assert version["status"] == "CURRENT"
    assert (version["min_version"], version["version"]) == ("3.0", "3.72")
    self_links = [link["href"] for link in version["links"] if link["rel"] == "self"]
    assert self_links == [api.base_url + "/v3/"]


def test_no_header_means_3_0_and_is_echoed(api: Api) -> None:
    response = api.get("/volumes", version=None)
    assert response.status_code == 200
    assert response.headers["OpenStack-API-Version"] == "volume 3.0"
    assert "OpenStack-API-Version" in response.headers["Vary"]
    assert response.headers["x-openstack-request-id"].startswith("req-")
    assert response.headers["x-compute-request-id"] == response.headers["x-openstack-request-id"]


@pytest.mark.parametrize(
    ("header", "echo"),
    [("volume 3.27", "3.27"), ("volume latest", "3.72"), ("compute 2.1, volume 3.5", "3.5")],
)
def test_requested_version_is_echoed(api: Api, header: str, echo: str) -> None:
    response = api.get("/volumes", version=None, headers={"OpenStack-API-Version": header})
    assert response.status_code == 200
    assert response.headers["OpenStack-API-Version"] == f"volume {echo}"


def test_legacy_header_is_an_alias(api: Api) -> None:
    response = api.get("/volumes", version=None, headers={"X-OpenStack-Volume-API-Version": "3.40"})
    assert response.headers["OpenStack-API-Version"] == "volume 3.40"


@pytest.mark.parametrize("requested", ["3.99", "3.73", "2.0", "4.0"])
def test_out_of_range_version_is_406(api: Api, requested: str) -> None:
    response = api.get("/volumes", version=requested)
    message = assert_fault(response, 406, f"Version {requested} is not supported by the API.")
    assert "Minimum is 3.0 and maximum is 3.72." in message
    assert response.headers["Vary"] == "OpenStack-API-Version"


@pytest.mark.parametrize("requested", ["3.x.y", "3", "abc", "3.01", "3.1.0"])
def test_malformed_version_is_400(api: Api, requested: str) -> None:
    response = api.get("/volumes", version=requested)
    assert_fault(response, 400, f"API Version String {requested} is of invalid format.")


def test_version_errors_apply_to_documents_too(api: Api) -> None:
    response = httpx.get(api.base_url + "/v3/", headers={"OpenStack-API-Version": "volume 9.9"})
    assert_fault(response, 406)


def test_unknown_path_is_a_404_fault(api: Api) -> None:
    assert_fault(api.get("/no-such-resource"), 404, "could not be found")


def test_wrong_method_is_a_405_fault(api: Api) -> None:
    response = api.request("PATCH", "/volumes")
    assert_fault(response, 405)
    assert "GET" in response.headers["Allow"]


def test_openapi_document_lists_routes_and_models(api: Api) -> None:
    document = httpx.get(api.base_url + "/openapi.json").json()
    assert document["openapi"].startswith("3.")
    create = document["paths"]["/v3/volumes"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "VolumeCreateBody"
    )
    schemas = document["components"]["schemas"]
    assert "size" in schemas["VolumeCreate"]["properties"]
    assert set(document["paths"]["/v3/volumes/{volume_id}"]) == {"get", "put", "delete"}
