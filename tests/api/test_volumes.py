"""`/volumes`: lifecycle through the real workflows, views, filters and every error path."""

from __future__ import annotations

from pathlib import Path

import pytest

from cinderflow.api.schemas.volumes import VolumeDetail, VolumeSummary
from tests.helpers import Api, ThreadStack, assert_fault, new_project

CLIENT_REQUIRED = {"id", "name", "status", "size", "metadata", "attachments", "volume_type"}


def backend_files(stack: ThreadStack) -> set[str]:
    root = Path(stack.settings.backends[0].options["path"])
    return {p.name for p in root.glob("volume-*")}


def test_create_show_delete_on_both_databases(any_stack: ThreadStack) -> None:
    api = any_stack.api()
    created = api.create_volume(1, name="a", description="first", metadata={"k": "v"})
    assert created["status"] == "creating"
    assert created["metadata"] == {"k": "v"}
    volume = api.wait_status(created["id"], "available")
    assert volume["size"] == 1
    assert volume["volume_type"] == "__DEFAULT__"
    assert f"volume-{created['id']}" in backend_files(any_stack)

    assert api.delete(f"/volumes/{created['id']}").status_code == 202
    api.wait_gone(created["id"])
    assert f"volume-{created['id']}" not in backend_files(any_stack)


def test_detail_view_has_what_clients_need(api: Api) -> None:
    volume = api.available_volume(2, name="detail")
    assert set(volume) >= CLIENT_REQUIRED
    VolumeDetail.model_validate(volume)
    assert volume["attachments"] == []
    assert volume["bootable"] == "false"
    assert volume["encrypted"] is False
    assert volume["os-vol-tenant-attr:tenant_id"] == api.project
    assert volume["os-vol-host-attr:host"].endswith("@file#file")
    assert [link["rel"] for link in volume["links"]] == ["self", "bookmark"]
    assert volume["links"][0]["href"].endswith(f"/v3/{api.project}/volumes/{volume['id']}")


def test_admin_only_fields_are_hidden_from_members(api: Api, member: Api) -> None:
    volume_id = api.available_volume()["id"]
    seen = member.volume(volume_id)
    assert seen is not None
    for field in ("os-vol-tenant-attr:tenant_id", "os-vol-host-attr:host", "provider_id"):
        assert field not in seen
    assert "volume_type_id" in seen


@pytest.mark.parametrize(
    ("version", "present", "absent"),
    [
        ("3.0", set(), {"group_id", "volume_type_id", "consumes_quota", "shared_targets"}),
        ("3.13", {"group_id"}, {"provider_id", "volume_type_id"}),
        ("3.48", {"shared_targets", "service_uuid", "provider_id"}, {"volume_type_id"}),
        ("3.63", {"volume_type_id"}, {"encryption_key_id"}),
        ("3.65", {"encryption_key_id", "consumes_quota", "cluster_name"}, set()),
    ],
)
def test_fields_appear_at_their_microversion(
    api: Api, version: str, present: set[str], absent: set[str]
) -> None:
    volume_id = api.available_volume()["id"]
    body = api.get(f"/volumes/{volume_id}", version=version).json()["volume"]
    assert present <= set(body)
    assert not absent & set(body)


def test_create_accepts_what_cinderclient_sends(api: Api) -> None:
    body = {
        "volume": {
            "size": "1",
            "consistencygroup_id": None,
            "snapshot_id": None,
            "name": "cli",
            "description": None,
            "volume_type": "__DEFAULT__",
            "availability_zone": None,
            "metadata": {},
            "imageRef": None,
            "source_volid": None,
            "backup_id": None,
        }
    }
    response = api.post("/volumes", body)
    assert response.status_code == 202, response.text
    assert response.json()["volume"]["size"] == 1


def test_create_by_type_id_and_legacy_names(api: Api) -> None:
    type_id = api.available_volume()["volume_type_id"]
    created = api.create_volume(1, volume_type=type_id, display_name="old", display_description="d")
    assert (created["name"], created["description"]) == ("old", "d")
    assert created["volume_type"] == "__DEFAULT__"


def test_create_in_configured_zone(api: Api) -> None:
    assert api.create_volume(1, availability_zone="nova")["availability_zone"] == "nova"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"volume": {"size": 0}}, "volume.size"),
        ({"volume": {"size": -1}}, "volume.size"),
        ({"volume": {"size": "abc"}}, "must be an integer"),
        ({"volume": {"size": 1.5}}, "must be an integer"),
        ({"volume": {"size": True}}, "must be an integer"),
        ({"volume": {"size": 2**31}}, "volume.size"),
        ({"volume": {"size": 1, "name": 5}}, "volume.name"),
        ({"volume": {"size": 1, "name": "x" * 256}}, "volume.name"),
        ({"volume": {"size": 1, "metadata": {"k": 1}}}, "volume.metadata.k"),
        ({"volume": {"size": 1, "metadata": {"": "v"}}}, "volume.metadata"),
        ({"volume": {"size": 1, "metadata": ["k"]}}, "volume.metadata"),
        ({"volume": {"size": 1, "bogus": 1}}, "'bogus' was unexpected"),
        ({"volume": {"size": 1}, "extra": {}}, "'extra' was unexpected"),
        ({"volume": {"size": 1, "multiattach": "maybe"}}, "not a valid boolean"),
        ({"volume": {}}, "must be an integer and greater than 0"),
        ({"volumes": {"size": 1}}, "'volume' is a required property"),
        ({"volume": "1"}, "volume"),
        ([], "JSON object"),
        ({"volume": {"size": 1, "imageRef": "x"}}, "no image service is configured"),
        ({"volume": {"snapshot_id": "s", "source_volid": "v"}}, "Only one of snapshot_id"),
    ],
)
def test_bad_create_bodies_are_400(api: Api, body: object, fragment: str) -> None:
    before = api.get("/volumes").json()["volumes"]
    assert_fault(api.post("/volumes", body), 400, fragment)
    assert api.get("/volumes").json()["volumes"] == before


@pytest.mark.parametrize(
    ("content", "content_type", "code", "fragment"),
    [
        ("{not json", "application/json", 400, "Malformed request body"),
        ("", "application/json", 400, "Malformed request body"),
        ('{"volume": {"size": 1}}', "text/plain", 415, "Unsupported Content-Type"),
    ],
)
def test_unparseable_bodies(
    api: Api, content: str, content_type: str, code: int, fragment: str
) -> None:
    response = api.request(
        "POST", "/volumes", content=content, headers={"Content-Type": content_type}
    )
    assert_fault(response, code, fragment)


def test_unknown_volume_type_is_404(api: Api) -> None:
    response = api.post("/volumes", {"volume": {"size": 1, "volume_type": "nope"}})
    assert_fault(response, 404, "Volume type with name nope could not be found.")


def test_unknown_availability_zone_is_400(api: Api) -> None:
    response = api.post("/volumes", {"volume": {"size": 1, "availability_zone": "mars"}})
    assert_fault(response, 400, "Availability zone 'mars' is invalid.")


def test_show_unknown_volume_is_404(api: Api) -> None:
    assert_fault(api.get("/volumes/00000000-0000-0000-0000-000000000000"), 404, "could not be")


def test_other_projects_volume_is_invisible(api: Api) -> None:
    volume_id = api.create_volume()["id"]
    stranger = api.as_user("bob", project=new_project())
    assert_fault(stranger.get(f"/volumes/{volume_id}"), 404, f"Volume {volume_id}")
    assert_fault(stranger.delete(f"/volumes/{volume_id}"), 404)
    assert_fault(stranger.put(f"/volumes/{volume_id}", {"volume": {"name": "x"}}), 404)


def test_reader_cannot_create_or_delete(api: Api) -> None:
    volume_id = api.available_volume()["id"]
    reader = api.as_user("rita", roles="reader")
    assert reader.volume(volume_id) is not None
    assert_fault(reader.post("/volumes", {"volume": {"size": 1}}), 403, "volume:create")
    assert_fault(reader.delete(f"/volumes/{volume_id}"), 403, "volume:delete")
    assert_fault(reader.put(f"/volumes/{volume_id}", {"volume": {"name": "x"}}), 403)


def test_update_name_description_metadata(api: Api) -> None:
    volume_id = api.available_volume(name="old", metadata={"a": "1"})["id"]
    response = api.put(
        f"/volumes/{volume_id}",
        {"volume": {"name": "new", "description": "d", "metadata": {"b": "2"}}},
    )
    assert response.status_code == 200, response.text
    updated = response.json()["volume"]
    assert (updated["name"], updated["description"], updated["metadata"]) == (
        "new",
        "d",
        {"b": "2"},
    )
    assert updated["updated_at"] is not None
    assert (
        api.put(f"/volumes/{volume_id}", {"volume": {"name": None}}).json()["volume"]["name"]
        is None
    )


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"volume": {"size": 2}}, "'size' was unexpected"),
        ({"volume": {"name": 1}}, "volume.name"),
        ({"name": "x"}, "'volume' is a required property"),
    ],
)
def test_bad_update_bodies_are_400(api: Api, body: object, fragment: str) -> None:
    volume_id = api.create_volume()["id"]
    assert_fault(api.put(f"/volumes/{volume_id}", body), 400, fragment)


def test_delete_refused_while_creating_and_twice(api: Api, stack: ThreadStack) -> None:
    hold = stack.settings.failpoint_dir / "driver.create_volume.before.hold"
    hold.touch()
    try:
        volume_id = api.create_volume()["id"]
        message = assert_fault(api.delete(f"/volumes/{volume_id}"), 400, "Invalid volume:")
        assert "Volume status must be available or error" in message
        forced = api.delete(f"/volumes/{volume_id}", params={"force": "true"})
        assert_fault(forced, 400, "is busy")
    finally:
        hold.unlink()
    api.wait_status(volume_id, "available")
    assert api.delete(f"/volumes/{volume_id}").status_code == 202
    again = api.delete(f"/volumes/{volume_id}")  # deleting (400) or already gone (404): never 202
    assert again.status_code in (400, 404), again.text
    if again.status_code == 400:
        assert_fault(again, 400, "Volume status must be available")
    api.wait_gone(volume_id)


def test_force_delete_needs_admin(api: Api, member: Api) -> None:
    volume_id = api.available_volume()["id"]
    assert_fault(
        member.delete(f"/volumes/{volume_id}", params={"force": "True"}), 403, "volume:force_delete"
    )
    # Before 3.23 `force` is not a parameter at all, so it cannot be refused.
    assert (
        member.delete(f"/volumes/{volume_id}", params={"force": "True"}, version="3.22").status_code
        == 202
    )


def test_delete_bad_boolean_is_400(api: Api) -> None:
    volume_id = api.available_volume()["id"]
    assert_fault(api.delete(f"/volumes/{volume_id}", params={"cascade": "perhaps"}), 400, "cascade")


def test_sdk_style_delete_params_are_accepted(api: Api) -> None:
    volume_id = api.available_volume()["id"]
    response = api.delete(f"/volumes/{volume_id}", params={"cascade": "False", "force": "False"})
    assert response.status_code == 202
    api.wait_gone(volume_id)


# Listing ----------------------------------------------------------------------------------


def test_list_summary_and_detail(api: Api) -> None:
    volume_id = api.create_volume(name="listed")["id"]
    (summary,) = api.get("/volumes").json()["volumes"]
    assert set(summary) == {"id", "name", "links"}
    VolumeSummary.model_validate(summary)
    (detail,) = api.get("/volumes/detail").json()["volumes"]
    assert detail["id"] == volume_id and "status" in detail


def test_filters_name_status_metadata(api: Api) -> None:
    a = api.available_volume(name="alpha", metadata={"tier": "gold", "x": "1"})["id"]
    b = api.available_volume(name="beta", metadata={"tier": "silver"})["id"]

    def ids(**params: str) -> set[str]:
        return {v["id"] for v in api.get("/volumes/detail", params=params).json()["volumes"]}

    assert ids(name="alpha") == {a}
    assert ids(status="available") == {a, b}
    assert ids(status="error") == set()
    assert ids(metadata='{"tier": "gold"}') == {a}
    assert ids(metadata="{'tier': 'silver'}") == {b}
    assert ids(metadata='{"tier": "gold", "x": "2"}') == set()
    assert_fault(api.get("/volumes/detail", params={"metadata": "[1]"}), 400, "dictionary")


def test_filters_size_zone_bootable(api: Api) -> None:
    small = api.create_volume(1)["id"]
    big = api.create_volume(3)["id"]

    def ids(**params: str) -> set[str]:
        return {v["id"] for v in api.get("/volumes", params=params).json()["volumes"]}

    assert ids(size="3") == {big}
    assert ids(availability_zone="nova") == {small, big}
    assert ids(availability_zone="mars") == set()
    assert ids(bootable="false") == {small, big}
    assert ids(bootable="true") == set()


def test_unknown_filters_are_refused_for_members_only(api: Api, member: Api) -> None:
    volume_id = api.create_volume()["id"]
    assert_fault(
        member.get("/volumes", params={"colour": "red"}),
        400,
        "Invalid filters colour are found in query options.",
    )
    listed = api.get("/volumes", params={"colour": "red"}).json()["volumes"]
    assert [v["id"] for v in listed] == [volume_id]


def test_pagination_with_marker_and_links(api: Api) -> None:
    made = [api.create_volume(name=f"p{i}")["id"] for i in range(5)]
    seen: list[str] = []
    params = {"limit": "2", "sort": "name:asc"}
    pages = 0
    while True:
        body = api.get("/volumes/detail", params=params).json()
        seen += [v["id"] for v in body["volumes"]]
        pages += 1
        if "volumes_links" not in body:
            break
        (link,) = body["volumes_links"]
        assert link["rel"] == "next"
        params = {**params, "marker": seen[-1]}
    assert seen == made
    assert pages == 3


def test_sorting_and_count(api: Api) -> None:
    small = api.create_volume(1, name="s")["id"]
    big = api.create_volume(3, name="b")["id"]
    by_size = api.get("/volumes/detail", params={"sort_key": "size", "sort_dir": "desc"}).json()
    assert [v["id"] for v in by_size["volumes"]] == [big, small]
    counted = api.get("/volumes", params={"with_count": "true", "limit": "1"}).json()
    assert counted["count"] == 2 and len(counted["volumes"]) == 1
    assert "count" not in api.get("/volumes", params={"with_count": "true"}, version="3.44").json()


@pytest.mark.parametrize(
    ("params", "code", "fragment"),
    [
        ({"limit": "x"}, 400, "limit param must be an integer"),
        ({"limit": "-1"}, 400, "limit param must be positive"),
        ({"sort": "colour:asc"}, 400, "Invalid sort key: colour"),
        ({"sort": "size:up"}, 400, "Invalid sort direction: up"),
        ({"marker": "00000000-0000-0000-0000-000000000000"}, 404, "Marker"),
        ({"all_tenants": "sure"}, 400, "all_tenants"),
        ({"offset": str(10**30)}, 400, "offset param must be at most"),
        ({"size": "big"}, 400, "size param must be an integer"),
        ({"metadata": "{" * 4000 + "1"}, 400, "dictionary"),
        ({"metadata": "-" * 4000 + "1"}, 400, "dictionary"),
        ({"name": "a\x00b"}, 400, "NUL characters"),
    ],
)
def test_bad_list_parameters(api: Api, params: dict[str, str], code: int, fragment: str) -> None:
    assert_fault(api.get("/volumes/detail", params=params), code, fragment)


def test_all_tenants_is_for_admins_only(api: Api) -> None:
    mine = api.create_volume(name="mine")["id"]
    other = api.as_user("bob", project=new_project())
    theirs = other.create_volume(name="theirs")["id"]

    def ids(client: Api, **params: str) -> set[str]:
        return {v["id"] for v in client.get("/volumes", params=params).json()["volumes"]}

    assert ids(other, all_tenants="1") == {theirs}
    everything = ids(api, all_tenants="1")
    assert {mine, theirs} <= everything
    assert ids(api, all_tenants="1", project_id=other.project) == {theirs}
    assert ids(api) == {mine}


@pytest.mark.parametrize(
    ("content", "code", "fragment"),
    [
        ("[" * 5000, 400, "Malformed request body"),
        ('{"volume": {"size": 1, "name": "a\\u0000b"}}', 400, "NUL characters"),
        ('{"volume": {"size": 1, "metadata": {"k\\u0000": "v"}}}', 400, "NUL characters"),
        ('{"volume": {"size": 1, "description": "' + "x" * 120_000 + '"}}', 413, "too large"),
    ],
)
def test_hostile_bodies_are_refused_cleanly(
    api: Api, content: str, code: int, fragment: str
) -> None:
    response = api.request(
        "POST", "/volumes", content=content, headers={"Content-Type": "application/json"}
    )
    assert_fault(response, code, fragment)
    assert api.get("/volumes").json()["volumes"] == []


def test_nul_in_a_path_is_refused(api: Api) -> None:
    assert_fault(api.get("/volumes/a%00b"), 400, "NUL characters")
