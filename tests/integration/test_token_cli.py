"""cardstream token and cardstream merchant against the moto server: the printed JWT
verifies like the API does; a merchant added locally posts with its own token at its own
rate; one added in AWS is a Cognito app client with its own secret and a registry entry."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import httpx
import pytest

from cardstream.cli import main
from cardstream_shared import resource_names as names
from cardstream_shared.contract import StreamEnvelope, kaggle_example
from cardstream_shared.jwt_auth import JwksCache, SigningKey, TokenVerifier, generate_signing_key
from cardstream_shared.merchant_registry import DEFAULT_PATH, MerchantEntry
from cardstream_shared.pan import PanKeyring
from cardstream_shared.resource_names import JWT_SIGNING_KEY_SECRET, SCOPE_READ, SCOPE_WRITE
from ingest_api.app import create_app
from ingest_api.settings import IngestSettings

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


# --- cardstream merchant add ---------------------------------------------------------------


def _entry(endpoint: str, path: str, client_id: str) -> MerchantEntry:
    ssm = boto3.client("ssm", endpoint_url=endpoint, region_name="us-east-1")
    value = ssm.get_parameter(Name=f"{path}/{client_id}")["Parameter"]["Value"]
    return MerchantEntry.from_parameter_value(value)


def _stream_client_ids(endpoint: str) -> list[str]:
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    iterator = kinesis.get_shard_iterator(
        StreamName=names.STREAM_NAME,
        ShardId="shardId-000000000000",
        ShardIteratorType="TRIM_HORIZON",
    )["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator)["Records"]
    return [StreamEnvelope.model_validate_json(r["Data"]).client_id for r in records]


async def test_a_merchant_added_locally_posts_with_its_own_token_at_its_own_rate(
    tmp_path: Path, moto_reset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    state = _stack(tmp_path, moto_reset, generate_signing_key())
    boto3.client("kinesis", endpoint_url=moto_reset, region_name="us-east-1").create_stream(
        StreamName=names.STREAM_NAME, ShardCount=1
    )
    boto3.client("secretsmanager", endpoint_url=moto_reset, region_name="us-east-1").create_secret(
        Name=names.PAN_KEY_SECRET, SecretString=PanKeyring.new_secret_string()
    )
    settings = IngestSettings(
        environment="test",
        aws_endpoint_url=moto_reset,
        stream_name=names.STREAM_NAME,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwks_url=f"file://{state / 'jwks.json'}",
        database_secret_id=None,
        merchant_registry_miss_refresh_s=0.001,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
            # Added while the API runs.
            add = ["merchant", "add", "acme-shop", "--records-per-second", "0.001"]
            assert main([*add, "--burst", "2", "--state-dir", str(state)]) == 0
            client = json.loads(capsys.readouterr().out)
            assert main(["token", "--client", "acme-shop", "--state-dir", str(state)]) == 0
            headers = {"Authorization": f"Bearer {capsys.readouterr().out.strip()}"}
            one = kaggle_example()
            posted = await api.post("/v1/transactions", json=one, headers=headers)
            too_many = await api.post(
                "/v1/transactions/batch", json=[one, one, one], headers=headers
            )
    assert posted.status_code == 202, posted.text
    # Its burst of 2 is its registry entry's, not the service's default.
    assert too_many.status_code == 413
    assert "at most 2 records" in too_many.json()["detail"]
    assert _stream_client_ids(moto_reset) == [client["client_id"]]
    assert _entry(moto_reset, DEFAULT_PATH, client["client_id"]) == MerchantEntry(
        name="acme-shop", records_per_second=0.001, burst=2
    )
    assert client["scopes"] == [SCOPE_WRITE, SCOPE_READ]
    assert client["client_secret"]


def test_merchant_add_refuses_a_second_merchant_of_the_same_name_and_a_bad_name(
    tmp_path: Path, moto_reset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    state = _stack(tmp_path, moto_reset, generate_signing_key())
    assert main(["merchant", "add", "acme", "--state-dir", str(state)]) == 0
    first = json.loads(capsys.readouterr().out)

    assert main(["merchant", "add", "acme", "--state-dir", str(state)]) == 2
    assert "merchant acme exists already" in capsys.readouterr().err
    assert main(["merchant", "add", "Not A Name", "--state-dir", str(state)]) == 2
    assert "name:" in capsys.readouterr().err
    assert main(["merchant", "add", "zero", "--burst", "0", "--state-dir", str(state)]) == 2
    assert "burst:" in capsys.readouterr().err
    assert main(["token", "--client", "nobody", "--state-dir", str(state)]) == 2
    assert "no merchant nobody" in capsys.readouterr().err
    # A scope its client does not hold is not granted.
    argv = ["token", "--client", "acme", "--scope", names.SCOPE_ALERTS_REVIEW]
    assert main([*argv, "--state-dir", str(state)]) == 2
    assert "does not hold alerts:review" in capsys.readouterr().err
    ssm = boto3.client("ssm", endpoint_url=moto_reset, region_name="us-east-1")
    entries = ssm.get_parameters_by_path(Path=DEFAULT_PATH)["Parameters"]
    assert [e["Name"] for e in entries] == [f"{DEFAULT_PATH}/{first['client_id']}"]


def test_a_merchant_added_in_aws_is_a_cognito_client_with_its_own_secret_and_entry(
    moto_reset: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_reset)
    cognito = boto3.client("cognito-idp", endpoint_url=moto_reset, region_name="us-east-1")
    pool = cognito.create_user_pool(PoolName="cardstream-dev")["UserPool"]["Id"]
    cognito.create_resource_server(
        UserPoolId=pool,
        Identifier="cardstream",
        Name="cardstream",
        Scopes=[
            {"ScopeName": scope, "ScopeDescription": scope}
            for scope in (SCOPE_WRITE, SCOPE_READ, names.SCOPE_ALERTS_REVIEW)
        ],
    )
    path = "/cardstream-dev/merchants"
    aws = ["--aws", "--user-pool-id", pool, "--registry-path", path, "--region", "us-east-1"]

    assert main(["merchant", "add", "acme", "--burst", "50", *aws]) == 0
    acme = json.loads(capsys.readouterr().out)
    assert main(["merchant", "add", "globex", *aws]) == 0
    globex = json.loads(capsys.readouterr().out)
    assert main(["merchant", "add", "acme", *aws]) == 2
    assert "exists already" in capsys.readouterr().err

    made = cognito.describe_user_pool_client(UserPoolId=pool, ClientId=acme["client_id"])
    client = made["UserPoolClient"]
    assert client["ClientName"] == "merchant-acme"
    assert client["AllowedOAuthFlows"] == ["client_credentials"]
    assert sorted(client["AllowedOAuthScopes"]) == [
        "cardstream/transactions:read",
        "cardstream/transactions:write",
    ]
    assert client["ClientSecret"] == acme["client_secret"]
    assert acme["client_secret"] != globex["client_secret"]
    assert acme["client_id"] != globex["client_id"]
    assert _entry(moto_reset, path, acme["client_id"]) == MerchantEntry(
        name="acme", records_per_second=1000, burst=50
    )
    assert _entry(moto_reset, path, globex["client_id"]).name == "globex"
