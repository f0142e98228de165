"""`cinderflow dev` defaults: a file backend, and a host name that survives hostname changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from cinderflow.dev import with_dev_defaults
from cinderflow.settings import load_settings


def test_host_is_kept_in_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CINDERFLOW_HOST", raising=False)
    first = with_dev_defaults(load_settings(data_dir=tmp_path))
    assert (tmp_path / "host").read_text() == first.host
    (tmp_path / "host").write_text("the-old-laptop")
    again = with_dev_defaults(load_settings(data_dir=tmp_path))
    assert again.host == "the-old-laptop"
    assert again.backends[0].options == {"path": str(tmp_path / "volumes")}


def test_explicit_host_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "host").write_text("saved")
    monkeypatch.setenv("CINDERFLOW_HOST", "chosen")
    assert with_dev_defaults(load_settings(data_dir=tmp_path)).host == "chosen"
