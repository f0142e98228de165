"""Operator policy: oslo.policy with Cinder's rule names, defaults printed by oslo.policy's
sample generator, and a policy.yaml that overrides them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cinderflow.api.policy import ACTIONS
from cinderflow.temporal.devserver import DevServer
from tests.conftest import Databases
from tests.helpers import ThreadStack, assert_fault, stack_settings

BIN = Path(sys.executable).parent


def test_the_sample_generator_prints_every_default() -> None:
    printed = subprocess.run(
        [str(BIN / "oslopolicy-sample-generator"), "--namespace", "cinderflow"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert '#"volume:extend": "rule:project_member_or_admin"' in printed
    assert '#"context_is_admin": "role:admin"' in printed
    for name in ACTIONS:
        assert f'#"{name}":' in printed, name


@pytest.fixture
def overridden(tmp_path: Path, temporal: DevServer, databases: Databases) -> Iterator[ThreadStack]:
    policy = tmp_path / "policy.yaml"
    policy.write_text('"volume:extend": "role:admin"\n"volume:get_all": "rule:admin_api"\n')
    settings = stack_settings(tmp_path, databases.new("sqlite"), temporal.address)
    stack = ThreadStack(settings.model_copy(update={"policy_file": policy})).start()
    yield stack
    stack.stop()


def test_a_policy_file_overrides_the_defaults(overridden: ThreadStack) -> None:
    admin = overridden.api()
    member = admin.as_user("alice", roles="member,reader")
    volume = member.available_volume(1)
    extend = {"os-extend": {"new_size": 2}}
    assert_fault(
        member.post(f"/volumes/{volume['id']}/action", extend),
        403,
        "Policy doesn't allow volume:extend to be performed.",
    )
    assert_fault(member.get("/volumes"), 403, "volume:get_all")
    assert member.get(f"/volumes/{volume['id']}").status_code == 200  # not overridden
    assert admin.post(f"/volumes/{volume['id']}/action", extend).status_code == 202
    assert admin.wait_status(volume["id"], "available")["size"] == 2


def test_a_missing_policy_file_is_refused_at_start(tmp_path: Path) -> None:
    from cinderflow.api.policy import Policy

    with pytest.raises(FileNotFoundError, match="policy_file"):
        Policy(tmp_path / "absent.yaml")
