"""Settings precedence: overrides > environment > TOML file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from cinderflow.settings import Settings, default_data_dir, load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    settings = load_settings()
    assert settings.data_dir == tmp_path / "cinderflow"
    assert settings.db_url == f"sqlite:///{tmp_path / 'cinderflow' / 'cinderflow.sqlite'}"
    assert settings.admin_users == ["admin"]


def test_default_data_dir_without_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_data_dir() == Path.home() / ".local" / "share" / "cinderflow"


def test_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "cinderflow.toml"
    config.write_text(
        'api_port = 1111\nhost = "from-file"\nstats_interval = 3.5\n'
        '[[backends]]\nname = "fast"\noptions = { path = "/srv/fast" }\n'
    )
    monkeypatch.setenv("CINDERFLOW_CONFIG", str(config))
    monkeypatch.setenv("CINDERFLOW_HOST", "from-env")
    settings = load_settings(api_port=2222)
    assert settings.api_port == 2222
    assert settings.host == "from-env"
    assert settings.stats_interval == 3.5
    assert settings.backend("fast").options == {"path": "/srv/fast"}
    assert isinstance(settings, Settings)
    with pytest.raises(KeyError):
        settings.backend("slow")


def test_backends_from_json_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CINDERFLOW_BACKENDS", '[{"name": "a", "options": {"path": "/a"}}]')
    monkeypatch.setenv("CINDERFLOW_ADMIN_USERS", '["root", "ops"]')
    settings = load_settings()
    assert [b.name for b in settings.backends] == ["a"]
    assert settings.admin_users == ["root", "ops"]
