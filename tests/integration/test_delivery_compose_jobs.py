"""compose.yaml's one-shot bootstrap job, run as written against a real moto server.

Docker is not needed: the job's shell command is taken from compose.yaml, with only the
emulator's address and the JWKS volume path swapped for this machine's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml

from cardstream_shared import resource_names as names

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_bootstrap_job_creates_resources_secrets_and_the_jwks(
    moto_reset: str, tmp_path: Path
) -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    job = compose["services"]["bootstrap-aws"]
    assert job["entrypoint"] == ["/bin/sh", "-c"]
    jwks = tmp_path / "jwks.json"
    script = (
        job["command"][0]
        .replace("http://aws:5000", moto_reset)
        .replace("/jwks/jwks.json", str(jwks))
    )
    env = {
        **os.environ,
        **{key: str(value) for key, value in job["environment"].items()},
        # The image puts its virtualenv first on PATH; here that is this interpreter's.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(
        ["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-2000:]
    made = json.loads(result.stdout)["resources"]
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
    script = (
        compose["services"]["bootstrap-aws"]["command"][0]
        .replace("http://aws:5000", moto_reset)
        .replace("/jwks/jwks.json", str(jwks))
    )
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    bootstrap = subprocess.run(
        ["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=180
    )
    assert bootstrap.returncode == 0, bootstrap.stderr[-2000:]
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
