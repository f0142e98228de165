"""Counting quotas: os-quota-sets, limits, 413s, and no overshoot under parallel requests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import Api, ThreadStack, assert_fault, new_project

DEFAULT_TYPE = "__DEFAULT__"


def quota_set(api: Api, project: str | None = None, **params: str) -> dict:
    response = api.get(f"/os-quota-sets/{project or api.project}", params=params)
    assert response.status_code == 200, response.text
    return response.json()["quota_set"]


def set_quota(api: Api, project: str | None = None, **limits: int) -> dict:
    response = api.put(f"/os-quota-sets/{project or api.project}", {"quota_set": limits})
    assert response.status_code == 200, response.text
    return response.json()["quota_set"]


def test_defaults_and_shape(api: Api) -> None:
    shown = quota_set(api)
    assert shown["id"] == api.project
    assert (shown["volumes"], shown["snapshots"], shown["gigabytes"]) == (10, 10, 1000)
    assert shown["per_volume_gigabytes"] == -1
    assert shown[f"volumes_{DEFAULT_TYPE}"] == -1
    defaults = api.get(f"/os-quota-sets/{api.project}/defaults").json()["quota_set"]
    assert defaults["volumes"] == 10 and defaults["id"] == api.project


def test_usage_is_counted_from_live_volumes(api: Api) -> None:
    api.available_volume(1)
    api.available_volume(2)
    usage = quota_set(api, usage="true")
    assert usage["volumes"] == {"limit": 10, "in_use": 2, "reserved": 0, "allocated": 0}
    assert usage["gigabytes"]["in_use"] == 3
    assert usage[f"gigabytes_{DEFAULT_TYPE}"]["in_use"] == 3
    assert usage["id"] == api.project


def test_update_then_delete_restores_defaults(api: Api) -> None:
    updated = set_quota(api, volumes=20, gigabytes=500, **{f"volumes_{DEFAULT_TYPE}": 5})
    assert "id" not in updated
    assert (updated["volumes"], updated["gigabytes"], updated[f"volumes_{DEFAULT_TYPE}"]) == (
        20,
        500,
        5,
    )
    assert quota_set(api)["volumes"] == 20
    other = new_project()
    assert quota_set(api, other)["volumes"] == 10  # per project
    assert api.delete(f"/os-quota-sets/{api.project}").status_code == 200
    assert quota_set(api)["volumes"] == 10


def test_cinderclient_update_body_is_accepted(api: Api) -> None:
    response = api.put(
        f"/os-quota-sets/{api.project}",
        {"quota_set": {"tenant_id": api.project, "volumes": "7", "snapshots": 30}},
        params={"skip_validation": "False"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["quota_set"]["volumes"] == 7


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"quota_set": {"colours": 1}}, "Bad key(s) in quota set: colours"),
        ({"quota_set": {"volumes": -2}}, "quota_set.volumes"),
        ({"quota_set": {"volumes": True}}, "quota_set.volumes"),
        ({"quota_set": {"volumes": "many"}}, "quota_set.volumes"),
        ({"quota_set": {"volumes": 2**31}}, "quota_set.volumes"),
        ({"quota_set": {}}, "quota_set"),
        ({"quota_set": {"tenant_id": "x"}}, "quota_set"),
        ({"quotas": {"volumes": 1}}, "'quota_set' is a required property"),
    ],
)
def test_bad_updates_are_400(api: Api, body: object, fragment: str) -> None:
    assert_fault(api.put(f"/os-quota-sets/{api.project}", body), 400, fragment)
    assert quota_set(api)["volumes"] == 10


def test_limit_below_usage_is_refused(api: Api) -> None:
    api.create_volume(1)
    api.create_volume(1)
    response = api.put(f"/os-quota-sets/{api.project}", {"quota_set": {"volumes": 1}})
    assert_fault(
        response,
        400,
        "Quota volumes limit must be equal or greater than existing resources. "
        "Current usage is 2 and the requested limit is 1.",
    )
    assert set_quota(api, volumes=-1)["volumes"] == -1  # unlimited is always fine


def test_quota_policies(api: Api, member: Api) -> None:
    assert quota_set(member)["volumes"] == 10
    assert_fault(
        member.put(f"/os-quota-sets/{api.project}", {"quota_set": {"volumes": 99}}),
        403,
        "volume_extension:quotas:update",
    )
    assert_fault(member.delete(f"/os-quota-sets/{api.project}"), 403)
    assert_fault(member.get(f"/os-quota-sets/{new_project()}"), 403, "quotas:show")
    assert quota_set(api, new_project())["volumes"] == 10  # admins see any project


@pytest.mark.parametrize(
    ("limits", "size", "kind", "message"),
    [
        (
            {"volumes": 1},
            1,
            "VolumeLimitExceeded",
            "Maximum number of volumes allowed (1) exceeded for quota 'volumes'.",
        ),
        (
            {"gigabytes": 3},
            3,
            "VolumeSizeExceedsAvailableQuota",
            "Requested volume or snapshot exceeds allowed gigabytes quota. Requested 3G, quota is "
            "3G and 1G has been consumed.",
        ),
        (
            {"per_volume_gigabytes": 2},
            3,
            "VolumeSizeExceedsLimit",
            "Requested volume size 3G is larger than maximum allowed limit 2G.",
        ),
        (
            {f"volumes_{DEFAULT_TYPE}": 1},
            1,
            "VolumeLimitExceeded",
            f"Maximum number of volumes allowed (1) exceeded for quota 'volumes_{DEFAULT_TYPE}'.",
        ),
    ],
)
def test_over_quota_create_is_413_and_writes_nothing(
    api: Api, limits: dict, size: int, kind: str, message: str
) -> None:
    api.create_volume(1)
    set_quota(api, **limits)
    response = api.post("/volumes", {"volume": {"size": size}})
    assert_fault(response, 413, f"{kind}: {message}")
    assert response.headers["Retry-After"] == "0"
    assert response.json()["overLimit"]["retryAfter"] == "0"
    assert len(api.get("/volumes").json()["volumes"]) == 1


def test_limits(api: Api, member: Api) -> None:
    api.available_volume(2)
    absolute = api.get("/limits").json()["limits"]["absolute"]
    assert absolute["maxTotalVolumes"] == 10 and absolute["totalVolumesUsed"] == 1
    assert absolute["totalGigabytesUsed"] == 2 and absolute["maxTotalVolumeGigabytes"] == 1000
    other = new_project()
    set_quota(api, other, volumes=3)
    as_admin = api.get("/limits", params={"project_id": other}).json()["limits"]["absolute"]
    assert as_admin["maxTotalVolumes"] == 3 and as_admin["totalVolumesUsed"] == 0
    before_339 = api.get("/limits", params={"project_id": other}, version="3.38").json()
    assert before_339["limits"]["absolute"]["maxTotalVolumes"] == 10
    ignored = member.get("/limits", params={"project_id": other}).json()["limits"]["absolute"]
    assert ignored["totalVolumesUsed"] == 1  # non-admins always see their own project


def test_parallel_creates_never_exceed_the_limit(any_stack: ThreadStack) -> None:
    api = any_stack.api()
    set_quota(api, volumes=10)

    def create(_: int) -> int:
        client = api.as_user(api.user)
        return client.post("/volumes", {"volume": {"size": 1}}).status_code

    with ThreadPoolExecutor(40) as pool:
        codes = list(pool.map(create, range(40)))
    assert (codes.count(202), codes.count(413)) == (10, 30), codes
    listed = api.get("/volumes/detail").json()["volumes"]
    usage = quota_set(api, usage="true")
    assert usage["volumes"]["in_use"] == len(listed) == 10
    assert usage["gigabytes"]["in_use"] == sum(v["size"] for v in listed)
