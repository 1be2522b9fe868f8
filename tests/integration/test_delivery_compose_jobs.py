"""compose.yaml's one-shot bootstrap job and its dashboard sign-in, run as written against a
real moto server.

Docker is not needed: commands and settings are taken from compose.yaml, with only the
addresses (emulator, services, published ports) and the JWKS volume path swapped for this
machine's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml

from cardstream.local.ports import free_port, wait_for_port
from cardstream_shared import resource_names as names

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {
        **os.environ,
        **{key: str(value) for key, value in service.get("environment", {}).items()},
        # The image puts its virtualenv first on PATH; here that is this interpreter's.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }


def _bootstrap(compose: dict[str, Any], endpoint: str, jwks: Path) -> str:
    """Run the bootstrap job's script against ``endpoint``; its standard output."""
    job = compose["services"]["bootstrap-aws"]
    assert job["entrypoint"] == ["/bin/sh", "-c"]
    script = (
        job["command"][0].replace("http://aws:5000", endpoint).replace("/jwks/jwks.json", str(jwks))
    )
    result = subprocess.run(
        ["/bin/sh", "-c", script],
        env=_environment(job),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_bootstrap_job_creates_resources_secrets_and_the_jwks(
    moto_reset: str, tmp_path: Path
) -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    jwks = tmp_path / "jwks.json"
    made = json.loads(_bootstrap(compose, moto_reset, jwks))["resources"]
    assert made["stream_name"] == names.STREAM_NAME
    assert made["queue_url"].endswith(f"/{names.LANDED_QUEUE}")

    published = json.loads(jwks.read_text())
    assert published["keys"][0]["kty"] == "RSA"
    assert "d" not in published["keys"][0]  # the public half only

    secrets = boto3.client("secretsmanager", endpoint_url=moto_reset, region_name="us-east-1")
    loader = json.loads(secrets.get_secret_value(SecretId=names.DB_LOADER_SECRET)["SecretString"])
    # The compose services reach PostgreSQL by its service name.
    assert (loader["host"], loader["port"]) == ("postgres", 5432)
    signing = json.loads(
        secrets.get_secret_value(SecretId=names.JWT_SIGNING_KEY_SECRET)["SecretString"]
    )
    assert signing["jwks"] == published
    queue_url = compose["services"]["db-loader"]["environment"]["LOADER_QUEUE_URL"]
    assert queue_url.rsplit("/", 2)[-2:] == made["queue_url"].rsplit("/", 2)[-2:]


def test_tools_container_token_is_accepted_by_the_api_verifier(
    moto_reset: str, tmp_path: Path
) -> None:
    """compose.yaml's stack-info lets `cardstream token` in the tools container sign a token
    the compose ingest-api accepts (the bootstrap job's key, its JWKS, issuer and audience)."""
    import asyncio

    from cardstream_shared.jwt_auth import JwksCache, TokenVerifier
    from cardstream_shared.resource_names import SCOPE_WRITE

    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    jwks = tmp_path / "jwks.json"
    _bootstrap(compose, moto_reset, jwks)
    env = {**_environment({}), "AWS_DEFAULT_REGION": "us-east-1"}
    state = tmp_path / "state"
    state.mkdir()
    info = json.loads(compose["configs"]["stack-info"]["content"])
    info["aws_endpoint_url"] = moto_reset
    (state / "stack.json").write_text(json.dumps(info))
    token = subprocess.run(
        [
            sys.executable,
            "-m",
            "cardstream.cli",
            "token",
            "--state-dir",
            str(state),
            "--scope",
            SCOPE_WRITE,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert token.returncode == 0, token.stderr[-2000:]
    api = compose["services"]["ingest-api"]["environment"]
    verifier = TokenVerifier(
        issuer=api["INGEST_JWT_ISSUER"],
        audience=api["INGEST_JWT_AUDIENCE"],
        jwks=JwksCache(f"file://{jwks}"),
    )
    principal = asyncio.run(verifier.verify(token.stdout.strip()))
    assert SCOPE_WRITE in principal.scopes


def test_the_compose_dashboard_signs_a_browser_in_at_the_compose_sign_in_service(
    moto_reset: str, tmp_path: Path
) -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    jwks = tmp_path / "jwks.json"
    _bootstrap(compose, moto_reset, jwks)
    signin_port, dashboard_port = free_port(), free_port()
    signin_url = f"http://127.0.0.1:{signin_port}"
    dashboard_url = f"http://127.0.0.1:{dashboard_port}"
    # Each compose address, as this machine has it.
    addresses = {
        "http://aws:5000": moto_reset,
        "file:///jwks/jwks.json": f"file://{jwks}",
        "http://sign-in:9000": signin_url,
        "http://127.0.0.1:9000": signin_url,
        "http://127.0.0.1:8050": dashboard_url,
    }

    def here(value: object) -> str:
        text = str(value)
        for compose_address, address in addresses.items():
            text = text.replace(compose_address, address)
        return text

    signin = services["sign-in"]
    command = [here(arg) for arg in signin["command"]]
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(signin_port)
    assert command[:2] == ["python", "-m"]
    dashboard_env = {key: here(value) for key, value in _environment(services["dashboard"]).items()}
    dashboard_env.update({"DASHBOARD_HOST": "127.0.0.1", "DASHBOARD_PORT": str(dashboard_port)})
    assert dashboard_env["DASHBOARD_ENVIRONMENT"] == "local"
    with (
        (tmp_path / "sign-in.log").open("wb") as signin_log,
        (tmp_path / "dashboard.log").open("wb") as dashboard_log,
    ):
        provider = subprocess.Popen(
            [sys.executable, *command[1:]],
            env=_environment(signin),
            stdout=signin_log,
            stderr=subprocess.STDOUT,
        )
        dashboard = subprocess.Popen(
            [sys.executable, "-m", "dashboard"],
            env=dashboard_env,
            stdout=dashboard_log,
            stderr=subprocess.STDOUT,
        )
    try:
        for port, process in ((signin_port, provider), (dashboard_port, dashboard)):
            wait_for_port("127.0.0.1", port, timeout_s=60, alive=lambda p=process: p.poll() is None)
        # A browser: it follows redirects and keeps cookies.
        with httpx.Client(follow_redirects=True, timeout=30) as browser:
            signed_in = browser.get(f"{dashboard_url}/")
            page = browser.get(f"{dashboard_url}/")
    finally:
        for process in (dashboard, provider):
            process.terminate()
            process.wait(30)
    visited = [str(r.url) for r in signed_in.history]
    assert visited[:2] == [f"{dashboard_url}/", f"{dashboard_url}/auth/signin"]
    assert visited[2].startswith(f"{signin_url}/oauth2/authorize?")
    assert signed_in.status_code == 200, (tmp_path / "dashboard.log").read_text()[-2000:]
    assert "Signed in" in signed_in.text
    assert page.status_code == 200
    assert "Real Time Credit Card Fraud Monitoring" in page.text
