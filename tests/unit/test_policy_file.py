"""The policy file is the only thing besides the defaults: no search of oslo's config
directories, a relative path is the operator's, a file gone at runtime denies, and rules
ported from Cinder (`is_admin:True`, `is_admin_project:True`) see those credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from cinderflow.api.context import new_context
from cinderflow.api.policy import Policy


def member(policy: Policy):
    return new_context(
        policy, user_id="u", project_id="p", roles=frozenset({"member"}), request_id="r"
    )


def test_no_search_of_config_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for where in (tmp_path, tmp_path / ".cinderflow", tmp_path / ".cinderflow" / "policy.d"):
        where.mkdir(exist_ok=True)
        (where / "policy.yaml").write_text('"volume:get_all_tenants": "@"\n')
    monkeypatch.chdir(tmp_path)
    policy = Policy()
    assert not policy.check("volume:get_all_tenants", member(policy).credentials, "p")


def test_a_relative_file_a_gone_file_an_edited_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "mine.yaml"
    file.write_text('"volume:extend": "role:admin"\n')
    policy = Policy(Path("mine.yaml"))
    creds = member(policy).credentials
    assert not policy.check("volume:extend", creds, "p")
    assert policy.check("volume:create", creds, "p")
    file.unlink()
    assert not policy.check("volume:create", creds, "p"), "gone: denied, not the defaults"
    file.write_text('"volume:extend": "@"\n')
    assert policy.check("volume:extend", creds, "p")


def test_rules_ported_from_cinder(tmp_path: Path) -> None:
    file = tmp_path / "cinder.yaml"
    file.write_text(
        '"admin_api": "is_admin:True or (role:admin and is_admin_project:True)"\n'
        '"volume:get_all": "is_admin_project:True"\n'
    )
    policy = Policy(file)
    admin = new_context(
        policy, user_id="a", project_id="p", roles=frozenset({"admin"}), request_id="r"
    )
    assert admin.is_admin and policy.check("volume:force_delete", admin.credentials, "x")
    outside = new_context(
        policy, user_id="u", project_id="p", roles=frozenset({"member"}), request_id="r",
        is_admin_project=False,
    )  # fmt: skip
    assert not policy.check("volume:get_all", outside.credentials, "p")
