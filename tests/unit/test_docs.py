"""Documentation that must not drift from the code."""

from __future__ import annotations

from pathlib import Path

from cinderflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = [n for n in Settings.model_fields if f"`CINDERFLOW_{n.upper()}`" not in text]
    assert missing == []


def test_readme_gives_the_two_commands_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "pip install -e '.[clients]' && cinderflow dev" in readme
    assert "pip install -e '.[test]' && python -m pytest" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -q -e '.[test]'" in ci and "\npython -m pytest\n" in ci
