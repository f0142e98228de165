"""noauth contexts, roles, and routes with and without the project in the URL (contract §1.3)."""

from __future__ import annotations

import httpx

from tests.helpers import Api, assert_fault, new_project


def test_every_route_works_without_project_in_url(api: Api) -> None:
    volume_id = api.create_volume(name="short")["id"]
    assert api.get(f"/volumes/{volume_id}", project_in_url=False).status_code == 200
    listed = api.get("/volumes/detail", project_in_url=False).json()["volumes"]
    assert [v["id"] for v in listed] == [volume_id]
    metadata = api.get(f"/volumes/{volume_id}/metadata", project_in_url=False)
    assert metadata.json() == {"metadata": {}}


def test_url_project_must_match_the_token(api: Api) -> None:
    response = api.http.get(
        f"/v3/{new_project()}/volumes", headers={"X-Auth-Token": f"admin:{api.project}"}
    )
    assert_fault(response, 400, "Malformed request url")
    assert response.headers["OpenStack-API-Version"] == "volume 3.0"


def test_missing_token_is_401(api: Api) -> None:
    response = httpx.get(f"{api.base_url}/v3/volumes")
    assert_fault(response, 401, "X-Auth-Token")


def test_token_without_colon_is_user_and_project(api: Api) -> None:
    project = new_project()
    response = httpx.post(
        f"{api.base_url}/v3/{project}/volumes",
        json={"volume": {"size": 1}},
        headers={"X-Auth-Token": project},
    )
    assert response.status_code == 202
    assert response.json()["volume"]["user_id"] == project


def test_x_roles_overrides_admin_users(api: Api) -> None:
    volume_id = api.create_volume()["id"]
    demoted = api.as_user("admin", roles="member,reader")
    assert "os-vol-tenant-attr:tenant_id" not in (demoted.volume(volume_id) or {})
    promoted = api.as_user("carol", roles="admin")
    assert (promoted.volume(volume_id) or {})["os-vol-tenant-attr:tenant_id"] == api.project


def test_users_without_roles_cannot_read(api: Api) -> None:
    volume_id = api.create_volume()["id"]
    nobody = api.as_user("nobody", roles="")
    assert_fault(nobody.get("/volumes"), 403, "volume:get_all")
    assert_fault(nobody.get(f"/volumes/{volume_id}"), 404)


def test_inbound_global_request_id_is_accepted(api: Api) -> None:
    response = api.get("/volumes", headers={"X-OpenStack-Request-ID": "req-global"})
    assert response.status_code == 200
    assert response.headers["x-openstack-request-id"] != "req-global"
