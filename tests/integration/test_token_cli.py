"""cardstream token against the moto server: the printed JWT verifies like the API does."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from cardstream.cli import main
from cardstream_shared.jwt_auth import JwksCache, SigningKey, TokenVerifier, generate_signing_key
from cardstream_shared.resource_names import JWT_SIGNING_KEY_SECRET, SCOPE_READ, SCOPE_WRITE

pytestmark = pytest.mark.integration

ISSUER = "cardstream-local"
AUDIENCE = "cardstream"


def _stack(tmp_path: Path, endpoint: str, key: SigningKey | None) -> Path:
    if key is not None:
        secrets = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1")
        secrets.create_secret(Name=JWT_SIGNING_KEY_SECRET, SecretString=key.to_secret_string())
    state = tmp_path / "state"
    state.mkdir()
    jwks = state / "jwks.json"
    if key is not None:
        jwks.write_text(json.dumps(key.jwks))
    (state / "stack.json").write_text(
        json.dumps(
            {
                "aws_endpoint_url": endpoint,
                "aws_region": "us-east-1",
                "jwt": {
                    "issuer": ISSUER,
                    "audience": AUDIENCE,
                    "signing_key_secret": JWT_SIGNING_KEY_SECRET,
                    "jwks_url": f"file://{jwks}",
                },
            }
        )
    )
    return state


async def test_printed_token_verifies_with_the_requested_scopes(
    tmp_path: Path, moto_reset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    state = _stack(tmp_path, moto_reset, generate_signing_key())
    argv = ["token", "--scope", SCOPE_WRITE, "--scope", SCOPE_READ, "--sub", "merchant-42"]

    assert main([*argv, "--ttl", "600", "--state-dir", str(state)]) == 0

    token = capsys.readouterr().out.strip()
    verifier = TokenVerifier(
        issuer=ISSUER, audience=AUDIENCE, jwks=JwksCache(f"file://{state / 'jwks.json'}")
    )
    principal = await verifier.verify(token)
    assert principal.subject == "merchant-42"
    assert principal.scopes == {SCOPE_WRITE, SCOPE_READ}


def test_without_stack_json_it_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["token", "--scope", SCOPE_READ, "--state-dir", str(tmp_path)])

    assert status == 2
    assert "stack.json does not exist" in capsys.readouterr().err


def test_missing_signing_key_is_reported(
    tmp_path: Path, moto_reset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    state = _stack(tmp_path, moto_reset, None)

    assert main(["token", "--scope", SCOPE_READ, "--state-dir", str(state)]) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "cannot read the signing key" in captured.err
    assert "ResourceNotFoundException" in captured.err
