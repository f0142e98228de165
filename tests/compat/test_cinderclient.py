"""The unmodified `cinder` CLI (python-cinderclient) in noauth mode against a real stack."""

from __future__ import annotations

from pathlib import Path

from tests.compat.conftest import field
from tests.helpers import ThreadStack, poll


def test_create_list_show_delete(cinder, stack: ThreadStack) -> None:
    created = cinder("create", "1", "--name", "a", "--metadata", "purpose=test")
    volume_id = field(created.stdout, "id")
    assert field(created.stdout, "name") == "a"

    poll(lambda: field(cinder("show", "a").stdout, "status") == "available", what="available")
    listed = cinder("list").stdout
    assert volume_id in listed and "available" in listed
    files = Path(stack.settings.backends[0].options["path"])
    assert (files / f"volume-{volume_id}").exists()

    cinder("delete", "a")
    poll(lambda: cinder("show", volume_id, check=False).returncode != 0, what="deleted")
    assert not (files / f"volume-{volume_id}").exists()


def test_old_microversion_and_version_list(cinder) -> None:
    assert "ID" in cinder("--os-volume-api-version", "3.0", "list").stdout
    versions = cinder("version-list").stdout
    assert "3.72" in versions and "3.0" in versions


def test_errors_are_reported_by_the_cli(cinder) -> None:
    missing = cinder("show", "no-such-volume", check=False)
    assert missing.returncode != 0
    assert "No volume with a name or ID of 'no-such-volume' exists." in missing.stderr
    bad_type = cinder("create", "1", "--volume-type", "nope", check=False)
    assert bad_type.returncode != 0
    assert "Volume type with name nope could not be found. (HTTP 404)" in bad_type.stderr
