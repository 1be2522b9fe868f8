"""A service given invalid configuration refuses to start and names the setting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("module", "variable"),
    [
        ("ingest_api", "INGEST_PORT"),
        ("stream_writer", "WRITER_HEALTH_PORT"),
        ("db_loader", "LOADER_HEALTH_PORT"),
        ("dashboard", "DASHBOARD_PORT"),
    ],
)
def test_invalid_setting_is_named_and_the_service_does_not_start(
    module: str, variable: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(variable.split("_")[0] + "_")}
    env[variable] = "not-a-port"
    result = subprocess.run(
        [sys.executable, "-m", module],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert variable in result.stderr
    assert "not-a-port" not in result.stderr  # values are never echoed (they may be secrets)
