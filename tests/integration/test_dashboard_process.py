"""The dashboard as a real process (``python -m dashboard``): HTTPS behind the ALB."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cardstream.local.ports import free_port, wait_for_port
from cardstream_infra.components.fargate_task import health_check_command

pytestmark = pytest.mark.integration


def test_serves_https_with_a_certificate_of_its_own(empty_database: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DASHBOARD_ENVIRONMENT": "test",
        "DASHBOARD_PORT": str(port),
        "DASHBOARD_DATABASE_URL": empty_database,
        "DASHBOARD_DATABASE_SECRET_ID": "",
        "DASHBOARD_JWT_ISSUER": "cardstream-local",
        "DASHBOARD_JWT_AUDIENCE": "cardstream",
        "DASHBOARD_JWKS_URL": f"file://{tmp_path / 'jwks.json'}",
        "DASHBOARD_TLS_SELF_SIGNED": "true",
    }
    with (tmp_path / "dashboard.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "dashboard"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port("127.0.0.1", port, timeout_s=60, alive=lambda: process.poll() is None)
        answer = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=False, timeout=10)
        assert answer.status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        command = health_check_command(port, tls=True)
        assert subprocess.run([sys.executable, *command[2:]], timeout=60).returncode == 0
    finally:
        process.terminate()
        process.wait(30)
