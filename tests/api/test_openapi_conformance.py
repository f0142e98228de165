"""The OpenAPI document tells the truth: schemathesis (every check: schema-valid requests
accepted, schema-violating ones refused, every status and response documented, `Allow` right)
over every operation, against a real stack, with a fixed seed and a bounded budget."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import ThreadStack

ST = str(Path(sys.executable).parent / "st")
CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = "1"
EXAMPLES = "10"


def test_schemathesis_finds_nothing(own_stack: ThreadStack, tmp_path: Path) -> None:
    """On a stack of its own: the same seed meets the same state on every run."""
    stack, api = own_stack, own_stack.api()
    api.available_volume(1)  # something for the stateful phase to find
    run = subprocess.run(
        [ST, "--config-file", str(CONFIG), "run", f"{stack.url}/openapi.json",
         "--url", stack.url, "--checks", "all", "--seed", SEED, "--max-examples", EXAMPLES,
         "--workers", "2", "--request-timeout", "30",
         "-H", f"X-Auth-Token: admin:{api.project}", "-H", "OpenStack-API-Version: volume 3.71"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    summary = run.stdout[run.stdout.find("SUMMARY") :]
    assert run.returncode == 0, run.stdout[-6000:]
    assert "Tested: " in summary and "failures" not in summary.split("Test cases")[-1], summary
