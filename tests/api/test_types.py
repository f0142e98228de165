"""Volume types, access, extra specs and encryption specs, with their error paths."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import Api, assert_fault, new_project


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_type(api: Api, name: str | None = None, **fields: object) -> dict:
    response = api.post("/types", {"volume_type": {"name": name or unique(), **fields}})
    assert response.status_code == 200, response.text
    return response.json()["volume_type"]


def type_names(api: Api, **params: str) -> set[str]:
    response = api.get("/types", params=params)
    assert response.status_code == 200, response.text
    return {t["name"] for t in response.json()["volume_types"]}


# Types --------------------------------------------------------------------------------------


def test_create_show_update_delete(api: Api) -> None:
    created = make_type(api, description="fast tier", extra_specs={"volume_backend_name": "file"})
    assert set(created) == {
        "id",
        "name",
        "is_public",
        "description",
        "extra_specs",
        "os-volume-type-access:is_public",
    }
    assert created["extra_specs"] == {"volume_backend_name": "file"}
    shown = api.get(f"/types/{created['id']}").json()["volume_type"]
    assert shown["qos_specs_id"] is None and shown["description"] == "fast tier"

    new_name = unique("renamed")
    updated = api.put(f"/types/{created['id']}", {"volume_type": {"name": new_name}})
    assert updated.status_code == 200
    assert updated.json()["volume_type"]["name"] == new_name
    assert "os-volume-type-access:is_public" not in updated.json()["volume_type"]

    assert api.delete(f"/types/{created['id']}").status_code == 202
    assert_fault(api.get(f"/types/{created['id']}"), 404, f"Volume type {created['id']}")


def test_default_type(api: Api) -> None:
    default = api.get("/types/default").json()["volume_type"]
    assert default["name"] == "__DEFAULT__"
    assert_fault(api.delete(f"/types/{default['id']}"), 400, "is a default volume type")


def test_members_see_filtered_views(api: Api, member: Api) -> None:
    created = make_type(api, extra_specs={"multiattach": "<is> True", "secret": "x"})
    seen = member.get(f"/types/{created['id']}").json()["volume_type"]
    assert seen["extra_specs"] == {"multiattach": "<is> True"}
    assert "qos_specs_id" not in seen
    assert seen["os-volume-type-access:is_public"] is True
    reader = api.as_user("rita", roles="reader")
    assert (
        "os-volume-type-access:is_public"
        not in reader.get(f"/types/{created['id']}").json()["volume_type"]
    )


def test_list_visibility(api: Api, member: Api) -> None:
    public = make_type(api)["name"]
    private = make_type(api, **{"os-volume-type-access:is_public": False})
    shared = make_type(api, **{"os-volume-type-access:is_public": "false"})
    api.post(f"/types/{shared['id']}/action", {"addProjectAccess": {"project": member.project}})

    seen_by_member = type_names(member)
    assert public in seen_by_member and shared["name"] in seen_by_member
    assert private["name"] not in seen_by_member
    assert private["name"] not in type_names(member, is_public="none")  # ignored for members
    assert_fault(member.get(f"/types/{private['id']}"), 404)

    assert private["name"] in type_names(api, is_public="None")
    assert private["name"] not in type_names(api)
    only_private = type_names(api, is_public="false")
    assert private["name"] in only_private and public not in only_private
    assert_fault(api.get("/types", params={"is_public": "maybe"}), 400, "Invalid is_public filter")


def test_list_filters(api: Api, member: Api) -> None:
    tagged = make_type(api, extra_specs={"multiattach": "<is> True"})["name"]
    assert tagged in type_names(member, extra_specs="{'multiattach': '<is> True'}")
    assert type_names(member, extra_specs='{"secret": "x"}') == set()
    assert_fault(member.get("/types", params={"colour": "x"}), 400, "Invalid filters colour")
    assert member.get("/types", params={"colour": "x"}, version="3.51").status_code == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"volume_type": {"name": ""}}, "volume_type.name"),
        ({"volume_type": {"name": "   "}}, "The 'name' can not be empty."),
        ({"volume_type": {"name": "x" * 256}}, "volume_type.name"),
        ({"volume_type": {}}, "'name' is a required property"),
        ({"volume_type": {"name": "x", "colour": "red"}}, "'colour' was unexpected"),
        ({"volume_type": {"name": "x", "os-volume-type-access:is_public": "maybe"}}, "boolean"),
        ({"volume_type": {"name": "x", "extra_specs": {"bad key!": "v"}}}, "extra_specs"),
        ({"volume_type": {"name": "x", "extra_specs": {"k": 1}}}, "extra_specs.k"),
    ],
)
def test_bad_type_bodies(api: Api, body: object, fragment: str) -> None:
    assert_fault(api.post("/types", body), 400, fragment)


def test_type_errors(api: Api, member: Api) -> None:
    created = make_type(api)
    assert_fault(
        api.post("/types", {"volume_type": {"name": created["name"]}}),
        409,
        f"Volume Type {created['name']} already exists.",
    )
    other = make_type(api)
    assert_fault(
        api.put(f"/types/{other['id']}", {"volume_type": {"name": created["name"]}}),
        409,
        "already exists",
    )
    assert_fault(
        api.put(f"/types/{other['id']}", {"volume_type": {}}),
        400,
        "Specify volume type name, description, is_public or a combination thereof.",
    )
    assert_fault(
        api.put(f"/types/{other['id']}", {"volume_type": {"name": " "}}),
        400,
        "Volume type name can not be empty.",
    )
    assert_fault(api.put("/types/nope", {"volume_type": {"name": "n"}}), 404)
    assert_fault(api.delete("/types/nope"), 404, "Volume type nope could not be found.")
    assert_fault(member.post("/types", {"volume_type": {"name": unique()}}), 403, "type_create")
    assert_fault(member.delete(f"/types/{other['id']}"), 403, "type_delete")


def test_type_in_use_cannot_be_deleted_and_renaming_keeps_quotas(api: Api) -> None:
    vtype = make_type(api)
    api.put(f"/os-quota-sets/{api.project}", {"quota_set": {f"volumes_{vtype['name']}": 4}})
    volume = api.create_volume(1, volume_type=vtype["name"])
    assert_fault(api.delete(f"/types/{vtype['id']}"), 400, "Target volume type is still in use.")
    renamed = unique("renamed")
    api.put(f"/types/{vtype['id']}", {"volume_type": {"name": renamed}})
    assert api.get(f"/os-quota-sets/{api.project}").json()["quota_set"][f"volumes_{renamed}"] == 4
    assert (api.volume(volume["id"]) or {})["volume_type"] == renamed


# Access ------------------------------------------------------------------------------------


def test_type_access(api: Api, member: Api) -> None:
    private = make_type(api, **{"os-volume-type-access:is_public": False})
    base = f"/types/{private['id']}"
    assert_fault(
        member.post("/volumes", {"volume": {"size": 1, "volume_type": private["id"]}}),
        404,
        "could not be found",
    )
    assert (
        api.post(f"{base}/action", {"addProjectAccess": {"project": member.project}}).status_code
        == 202
    )
    assert api.get(f"{base}/os-volume-type-access").json() == {
        "volume_type_access": [{"volume_type_id": private["id"], "project_id": member.project}]
    }
    assert (
        member.post("/volumes", {"volume": {"size": 1, "volume_type": private["name"]}}).status_code
        == 202
    )
    assert_fault(
        api.post(f"{base}/action", {"addProjectAccess": {"project": member.project}}),
        409,
        "combination already exists",
    )
    assert (
        api.post(f"{base}/action", {"removeProjectAccess": {"project": member.project}}).status_code
        == 202
    )
    assert_fault(
        api.post(f"{base}/action", {"removeProjectAccess": {"project": member.project}}),
        404,
        "Volume type access not found",
    )


def test_type_access_errors(api: Api, member: Api) -> None:
    public = make_type(api)
    assert_fault(
        api.get(f"/types/{public['id']}/os-volume-type-access"),
        404,
        "Access list not available for public volume types.",
    )
    assert_fault(
        api.post(f"/types/{public['id']}/action", {"addProjectAccess": {"project": "p"}}),
        400,
        "not applicable to public volume type",
    )
    assert_fault(
        api.post(f"/types/{public['id']}/action", {"dance": {}}),
        400,
        "There is no such action: dance",
    )
    assert_fault(
        api.post(f"/types/{public['id']}/action", {"addProjectAccess": {}}),
        400,
        "'project' is a required property",
    )
    assert_fault(api.post("/types/nope/action", {"addProjectAccess": {"project": "p"}}), 404)
    assert_fault(
        member.post(
            f"/types/{public['id']}/action", {"addProjectAccess": {"project": new_project()}}
        ),
        403,
    )


# Extra specs -------------------------------------------------------------------------------


def test_extra_specs_lifecycle(api: Api, member: Api) -> None:
    vtype = make_type(api)
    base = f"/types/{vtype['id']}/extra_specs"
    created = api.post(
        base, {"extra_specs": {"volume_backend_name": "file", "multiattach": "<is> True"}}
    )
    assert created.status_code == 200
    assert created.json() == {
        "extra_specs": {"volume_backend_name": "file", "multiattach": "<is> True"}
    }
    assert api.get(f"{base}/volume_backend_name").json() == {"volume_backend_name": "file"}
    assert api.put(f"{base}/volume_backend_name", {"volume_backend_name": "other"}).json() == {
        "volume_backend_name": "other"
    }
    assert member.get(base).json() == {"extra_specs": {"multiattach": "<is> True"}}
    assert_fault(member.get(f"{base}/volume_backend_name"), 404, "has no extra specs with key")
    assert api.delete(f"{base}/volume_backend_name").status_code == 202
    assert api.get(base).json() == {"extra_specs": {"multiattach": "<is> True"}}


@pytest.mark.parametrize(
    ("method", "suffix", "body", "code", "fragment"),
    [
        ("PUT", "/a", {"b": "1"}, 400, "Request body and URI mismatch"),
        ("PUT", "/a", {"a": "1", "b": "2"}, 400, ""),
        ("PUT", "/a", {}, 400, ""),
        ("POST", "", {"extra_specs": {"bad key": "v"}}, 400, "extra_specs"),
        ("POST", "", {"specs": {}}, 400, "'extra_specs' is a required property"),
        (
            "POST",
            "",
            {"extra_specs": {"multiattach": "<is> True", "cacheable": "<is> True"}},
            400,
            "cacheable cannot be set with multiattach.",
        ),
        ("GET", "/missing", None, 404, "has no extra specs with key missing"),
        ("DELETE", "/missing", None, 404, "has no extra specs with key missing"),
    ],
)
def test_extra_spec_errors(
    api: Api, method: str, suffix: str, body: object, code: int, fragment: str
) -> None:
    vtype = make_type(api)
    response = api.request(method, f"/types/{vtype['id']}/extra_specs{suffix}", json=body)
    assert_fault(response, code, fragment)


def test_extra_specs_of_a_type_in_use_are_frozen(api: Api, member: Api) -> None:
    vtype = make_type(api, extra_specs={"k": "v"})
    api.create_volume(1, volume_type=vtype["id"])
    base = f"/types/{vtype['id']}/extra_specs"
    for response in (
        api.post(base, {"extra_specs": {"x": "y"}}),
        api.put(f"{base}/k", {"k": "w"}),
        api.delete(f"{base}/k"),
    ):
        assert_fault(response, 400, "Volume Type is currently in use.")
    assert_fault(member.post(base, {"extra_specs": {"x": "y"}}), 403, "types_extra_specs:create")
    assert_fault(api.get("/types/nope/extra_specs"), 404)


# Encryption ------------------------------------------------------------------------------


LUKS = {
    "provider": "luks",
    "cipher": "aes-xts-plain64",
    "key_size": 256,
    "control_location": "front-end",
}


def test_encryption_lifecycle(api: Api) -> None:
    vtype = make_type(api)
    base = f"/types/{vtype['id']}/encryption"
    assert api.get(base).json() == {}
    created = api.post(base, {"encryption": LUKS})
    assert created.status_code == 200
    body = created.json()["encryption"]
    assert body["volume_type_id"] == vtype["id"] and body["encryption_id"]
    assert {k: body[k] for k in LUKS} == LUKS
    flat = api.get(base).json()
    assert flat["provider"] == "luks" and flat["volume_type_id"] == vtype["id"]
    assert flat["deleted"] is False and flat["encryption_id"] == body["encryption_id"]
    assert api.get(f"{base}/cipher").json() == {"cipher": "aes-xts-plain64"}

    changed = api.put(f"{base}/{body['encryption_id']}", {"encryption": {"key_size": "512"}})
    assert changed.status_code == 200 and changed.json() == {"encryption": {"key_size": 512}}
    assert api.get(base).json()["key_size"] == 512
    assert api.delete(f"{base}/provider").status_code == 202  # cinderclient sends 'provider'
    assert api.get(base).json() == {}


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"provider": "rot13", "control_location": "front-end"}, "provider must be one of"),
        ({"provider": "luks", "control_location": "middle"}, "encryption.control_location"),
        ({"provider": "luks"}, "'control_location' is a required property"),
        ({"provider": "luks", "control_location": "front-end", "key_size": "big"}, "key_size"),
        ({"provider": "luks", "control_location": "front-end", "key_size": -1}, "key_size"),
        ({"provider": "luks", "control_location": "front-end", "colour": "x"}, "'colour'"),
    ],
)
def test_bad_encryption_specs(api: Api, spec: dict, fragment: str) -> None:
    vtype = make_type(api)
    assert_fault(api.post(f"/types/{vtype['id']}/encryption", {"encryption": spec}), 400, fragment)


def test_encryption_errors(api: Api, member: Api) -> None:
    vtype = make_type(api)
    base = f"/types/{vtype['id']}/encryption"
    assert_fault(api.put(f"{base}/x", {"encryption": {"key_size": 1}}), 404, "does not exist")
    assert_fault(api.delete(f"{base}/x"), 404, "does not exist")
    assert api.post(base, {"encryption": LUKS}).status_code == 200
    assert_fault(
        api.post(base, {"encryption": LUKS}),
        400,
        f"Volume type encryption for type {vtype['id']} already exists.",
    )
    assert_fault(member.get(base), 403, "volume_type_encryption:get")

    in_use = make_type(api)
    api.create_volume(1, volume_type=in_use["id"])
    used = f"/types/{in_use['id']}/encryption"
    assert_fault(
        api.post(used, {"encryption": LUKS}),
        400,
        "Cannot create encryption specs. Volume type in use.",
    )
