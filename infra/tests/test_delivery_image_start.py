"""What CI's image job checks when it starts each service image once without settings
(.github/workflows/ci.yml): the process exits with status 2 and names a missing variable.
Here the same module runs with none of its settings in the environment, and the refusal is
matched with the very pattern the workflow greps for."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MODULES = {
    "ingest-api": "ingest_api",
    "stream-writer": "stream_writer",
    "db-loader": "db_loader",
    "dashboard": "dashboard",
}


def _refusal_check() -> tuple[dict[str, str], str]:
    """The workflow step's service -> prefix pairs and its grep pattern."""
    ci = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    step = next(s for s in ci["jobs"]["images"]["steps"] if "refuses to start" in s.get("name", ""))
    pairs = re.search(r"for service in (.+); do", step["run"])
    pattern = re.search(r'grep -Eq "(.+?)" <<<', step["run"])
    assert pairs is not None
    assert pattern is not None
    return dict(p.split(":") for p in pairs.group(1).split()), pattern.group(1)


@pytest.mark.parametrize("service", sorted(MODULES))
def test_a_service_with_no_settings_refuses_to_start_naming_one(service: str) -> None:
    prefixes, pattern = _refusal_check()
    prefix = prefixes[service]
    # As in the image: nothing of the service's own in the environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefix)}
    result = subprocess.run(
        [sys.executable, "-m", MODULES[service]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert re.search(pattern.replace("${prefix}", prefix), result.stderr, re.MULTILINE), (
        result.stderr[-2000:]
    )
