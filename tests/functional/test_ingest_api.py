"""ingest-api in process against the real moto server: auth, limits, batches, F1 and F2.

A fake Kinesis client appears only to inject faults (partial and total PutRecords failures,
lost acknowledgements); it forwards everything else to moto, and every assertion reads the
stream back from moto.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import gzip
import hashlib
import hmac
import io
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from card_number_forms import ascii_digits, written_card_numbers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_aws import provision_ingest
from merchant_entries import OPERATORS_CLIENT, register

from cardstream_shared import resource_names as names
from cardstream_shared.aws import aio_client
from cardstream_shared.contract import KAGGLE_FIELDS, StreamEnvelope, TransactionIn, kaggle_example
from cardstream_shared.jwt_auth import SigningKey, generate_signing_key, issue_token
from cardstream_shared.pan import luhn_valid
from ingest_api import kinesis_codec
from ingest_api.app import create_app
from ingest_api.settings import IngestSettings

pytestmark = pytest.mark.functional

ISSUER = "cardstream-local"
AUDIENCE = "cardstream"
STREAM = names.STREAM_NAME


def _pan(prefix: str) -> str:
    """A Luhn-valid 16-digit card number starting with ``prefix``."""
    body = prefix.ljust(15, "7")
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable: one check digit always fits")


def _row(n: int, **changes: Any) -> dict[str, Any]:
    row = kaggle_example()
    row.update(trans_num=f"t{n:031d}", cc_num=_pan(f"4{n % 1000:03d}"))
    row.update(changes)
    return row


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return generate_signing_key("test-key")


@pytest.fixture(scope="module")
def jwks_url(tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey) -> str:
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps(signing_key.jwks))
    return f"file://{path}"


@pytest.fixture
def token(signing_key: SigningKey) -> Callable[..., str]:
    def make(
        scopes: tuple[str, ...] = (names.SCOPE_WRITE, names.SCOPE_READ),
        subject: str = "merchant-1",
        **overrides: Any,
    ) -> str:
        kwargs: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "subject": subject}
        kwargs.update(overrides)
        return issue_token(signing_key, scopes=scopes, **kwargs)

    return make


@pytest.fixture
def aws(moto_reset: str) -> str:
    """A fresh stream (two shards) and PAN key secret on the moto server."""
    provision_ingest(moto_reset, "merchant-1", "merchant-2", "reader-7", shards=2)
    return moto_reset


def stream_envelopes(endpoint: str) -> list[tuple[str, str, bytes]]:
    """Every record in the stream as (shard id, sequence number, data)."""
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    found = []
    for shard in kinesis.list_shards(StreamName=STREAM)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            found += [(shard["ShardId"], r["SequenceNumber"], r["Data"]) for r in page["Records"]]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return found


def stored_trans_nums(endpoint: str) -> list[str]:
    return [
        StreamEnvelope.model_validate_json(data).trans_num
        for _, _, data in stream_envelopes(endpoint)
    ]


def settings_for(endpoint: str, jwks_url: str, **overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "environment": "test",
        "aws_endpoint_url": endpoint,
        "stream_name": STREAM,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwks_url": jwks_url,
        "database_secret_id": None,
        "coalesce_window_ms": 2,
        "put_deadline_s": 2.0,
        "put_backoff_base_s": 0.01,
        "put_backoff_max_s": 0.05,
        "operator_client_ids": OPERATORS_CLIENT,
    }
    values.update(overrides)
    return IngestSettings(**values)


class FaultyKinesis:
    """Forwards to the real client, except for the faults queued in ``faults``.

    ``partial``: only every other entry reaches the stream, the others come back failed
    (as Kinesis reports throttling inside a 200). ``throttle``: the whole call is refused.
    ``lost_ack``: the entries are stored, then the answer is lost (a read timeout).
    ``hot_shard``: entries of the records named in ``throttled`` always fail, as on a shard
    that stays over its write limit; the others are stored.
    """

    def __init__(
        self,
        real: Any,
        faults: list[str],
        *,
        repeat_last: bool = False,
        throttled: frozenset[str] = frozenset(),
    ) -> None:
        self.real = real
        self.faults = faults
        self.repeat_last = repeat_last
        self.throttled = throttled

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def _next_fault(self) -> str | None:
        if not self.faults:
            return None
        if self.repeat_last and len(self.faults) == 1:
            return self.faults[0]
        return self.faults.pop(0)

    # Keyword names are botocore's.
    async def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> Any:  # noqa: N803
        fault = self._next_fault()
        if fault == "throttle":
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}},
                "PutRecords",
            )
        if fault == "crash":
            raise RuntimeError("injected bug")
        if fault == "lost_ack":
            await self.real.put_records(StreamName=StreamName, Records=Records)
            raise ReadTimeoutError(endpoint_url="http://kinesis")
        if fault in ("partial", "hot_shard"):
            if fault == "partial":
                failing = set(range(1, len(Records), 2))
            else:
                failing = {
                    i
                    for i, r in enumerate(Records)
                    if StreamEnvelope.model_validate_json(r["Data"]).trans_num in self.throttled
                }
            passed = [r for i, r in enumerate(Records) if i not in failing]
            stored = iter(
                (await self.real.put_records(StreamName=StreamName, Records=passed))["Records"]
                if passed
                else []
            )
            entries = [
                {
                    "ErrorCode": "ProvisionedThroughputExceededException",
                    "ErrorMessage": "Rate exceeded for shard",
                }
                if i in failing
                else next(stored)
                for i in range(len(Records))
            ]
            return {"FailedRecordCount": len(failing), "Records": entries}
        return await self.real.put_records(StreamName=StreamName, Records=Records)


@asynccontextmanager
async def running_api(
    settings: IngestSettings,
    *,
    faults: list[str] | None = None,
    repeat_last: bool = False,
    throttled: frozenset[str] = frozenset(),
) -> AsyncIterator[httpx.AsyncClient]:
    async with kinesis_codec.kinesis_client(settings) as real:
        client = (
            None
            if faults is None
            else FaultyKinesis(real, faults, repeat_last=repeat_last, throttled=throttled)
        )
        app = create_app(settings, kinesis_client=client)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
                yield http


@pytest.fixture
async def api(aws: str, jwks_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_api(settings_for(aws, jwks_url)) as http:
        yield http


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**changes: Any) -> dict[str, Any]:
    import time

    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "attacker",
        "iat": now,
        "exp": now + 600,
        "scope": f"{names.SCOPE_WRITE} {names.SCOPE_READ}",
    }
    claims.update(changes)
    return claims


def _forged(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def _public_pem(signing_key: SigningKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(signing_key.private_pem.encode(), None)
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- authentication and authorization -----------------------------------------------------


def _bad_tokens(signing_key: SigningKey, make: Callable[..., str]) -> dict[str, dict[str, str]]:
    public_pem = _public_pem(signing_key)
    other_key = generate_signing_key("not-published")
    return {
        "missing": {},
        "malformed": bearer("not.a.jwt"),
        "not_bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
        "expired": bearer(make(ttl_s=-600)),
        "wrong_issuer": bearer(make(issuer="https://evil.example")),
        "wrong_audience": bearer(make(audience="someone-else")),
        "alg_none": bearer(
            _forged({"alg": "none", "typ": "JWT", "kid": signing_key.kid}, _claims(), bytes).rsplit(
                ".", 1
            )[0]
            + "."
        ),
        "hs256_with_public_key": bearer(
            _forged(
                {"alg": "HS256", "typ": "JWT", "kid": signing_key.kid},
                _claims(),
                lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
            )
        ),
        "unknown_kid": bearer(
            issue_token(
                other_key,
                issuer=ISSUER,
                audience=AUDIENCE,
                subject="attacker",
                scopes=[names.SCOPE_WRITE],
            )
        ),
    }


async def test_every_invalid_token_is_refused_with_401_and_audited(
    api: httpx.AsyncClient,
    signing_key: SigningKey,
    token: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
    aws: str,
) -> None:
    caplog.set_level(logging.INFO)
    cases = _bad_tokens(signing_key, token)
    for case, headers in cases.items():
        response = await api.post("/v1/transactions", json=_row(1), headers=headers)
        assert response.status_code == 401, case
        assert response.headers["content-type"] == "application/problem+json", case
        assert response.headers["www-authenticate"].startswith("Bearer"), case
        assert response.json()["status"] == 401, case
    audits = [r for r in caplog.records if getattr(r, "event", None) == "auth_refused"]
    assert len(audits) == len(cases)
    assert {r.status for r in audits} == {401}  # type: ignore[attr-defined]
    assert all(r.origin == "203.0.113.7" and r.path == "/v1/transactions" for r in audits)  # type: ignore[attr-defined]
    logged = caplog.text + "".join(json.dumps(r.__dict__, default=str) for r in audits)
    for headers in cases.values():
        credential = headers.get("Authorization", "").partition(" ")[2]
        if credential:
            assert credential not in logged
    assert stored_trans_nums(aws) == []


async def test_valid_token_without_the_scope_is_refused_with_403(
    api: httpx.AsyncClient, token: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    reader = token(scopes=(names.SCOPE_READ,), subject="reader-7")
    response = await api.post("/v1/transactions", json=_row(1), headers=bearer(reader))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    writer = token(scopes=(names.SCOPE_WRITE,))
    response = await api.get("/v1/transactions/abc", headers=bearer(writer))
    assert response.status_code == 403
    audits = [r for r in caplog.records if getattr(r, "event", None) == "auth_refused"]
    assert [(r.status, r.subject) for r in audits] == [(403, "reader-7"), (403, "merchant-1")]  # type: ignore[attr-defined]


# --- merchants and operators ---------------------------------------------------------------


class FailingSsm:
    """Parameter Store that cannot be reached until ``healed`` (then the real client)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.healed = False

    def get_paginator(self, operation: str) -> Any:
        if not self.healed:
            raise EndpointConnectionError(endpoint_url="https://ssm.us-east-1.amazonaws.com")
        return self.real.get_paginator(operation)


async def test_a_client_without_a_registry_entry_is_refused_with_403_and_audited(
    api: httpx.AsyncClient,
    token: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
    aws: str,
) -> None:
    caplog.set_level(logging.INFO)
    stranger = bearer(token(subject="stranger"))
    posted = await api.post("/v1/transactions", json=_row(1), headers=stranger)
    read = await api.get("/v1/transactions/abc", headers=stranger)
    alerts = await api.get("/v1/alerts", headers=stranger)
    for response in (posted, read, alerts):
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == "this client is not a registered merchant"
    audits = [r for r in caplog.records if getattr(r, "event", None) == "auth_refused"]
    assert [(r.status, r.client_id, r.reason) for r in audits] == [  # type: ignore[attr-defined]
        (403, "stranger", "client is not a registered merchant")
    ] * 3
    assert stored_trans_nums(aws) == []


async def test_a_merchant_added_while_the_api_runs_posts_without_a_restart(
    aws: str, jwks_url: str, token: Callable[..., str]
) -> None:
    newcomer = bearer(token(subject="newcomer"))
    settings = settings_for(aws, jwks_url, merchant_registry_miss_refresh_s=0.001)
    async with running_api(settings) as api:
        assert (
            await api.post("/v1/transactions", json=_row(1), headers=newcomer)
        ).status_code == 403
        register(aws, "newcomer")
        answers = [await api.post("/v1/transactions", json=_row(2), headers=newcomer)]
        while answers[-1].status_code == 403 and len(answers) < 50:
            answers.append(await api.post("/v1/transactions", json=_row(2), headers=newcomer))
    assert answers[-1].status_code == 202, answers[-1].text
    assert stored_trans_nums(aws) == [_row(2)["trans_num"]]


async def test_each_merchant_has_its_own_rate_limit_from_its_entry(
    aws: str, jwks_url: str, token: Callable[..., str]
) -> None:
    register(aws, "small-shop", records_per_second=0.001, burst=3)
    small = bearer(token(subject="small-shop"))
    big = bearer(token(subject="merchant-1"))
    async with running_api(settings_for(aws, jwks_url)) as api:
        too_big = await api.post(
            "/v1/transactions/batch", json=[_row(n) for n in range(10, 14)], headers=small
        )
        first = await api.post("/v1/transactions/batch", json=[_row(1)], headers=small)
        third = await api.post("/v1/transactions", json=_row(3), headers=small)
        over = await api.post("/v1/transactions", json=_row(4), headers=small)
        others = await api.post(
            "/v1/transactions/batch", json=[_row(n) for n in range(20, 30)], headers=big
        )
    assert first.status_code == 200
    assert third.status_code == 202
    assert over.status_code == 429
    assert int(over.headers["retry-after"]) >= 1
    # More than its burst could never pass: refused outright, not "retry later".
    assert too_big.status_code == 413
    assert too_big.json()["type"].endswith("too-many-records")
    assert "3 records" in too_big.json()["detail"]
    assert others.status_code == 200
    assert len(stored_trans_nums(aws)) == 2 + 10


async def test_operators_are_recognized_by_their_client_and_never_post(
    api: httpx.AsyncClient, token: Callable[..., str], aws: str
) -> None:
    operator = bearer(
        token(
            scopes=(names.SCOPE_WRITE, names.SCOPE_READ, names.SCOPE_ALL_TENANTS),
            subject="jdoe",
            extra_claims={"client_id": OPERATORS_CLIENT, "username": "jdoe"},
        )
    )
    posted = await api.post("/v1/transactions", json=_row(1), headers=operator)
    read = await api.get("/v1/transactions/abc", headers=operator)
    assert posted.status_code == 403
    assert posted.json()["detail"] == "an operator's client may not post transactions"
    # Past authorization: this test API has no database, so the read itself is unavailable.
    assert read.status_code == 503
    assert read.json()["type"].endswith("database-unavailable")
    assert stored_trans_nums(aws) == []


async def test_without_a_readable_registry_no_write_is_served_until_it_can_be_read(
    aws: str, jwks_url: str, token: Callable[..., str]
) -> None:
    settings = settings_for(aws, jwks_url, merchant_registry_miss_refresh_s=0.001)
    merchant = bearer(token())
    async with aio_client("ssm", settings) as real:
        ssm = FailingSsm(real)
        app = create_app(settings, ssm_client=ssm)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
                refused = await api.post("/v1/transactions", json=_row(1), headers=merchant)
                ready = await api.get("/readyz")
                ssm.healed = True
                answers = [await api.post("/v1/transactions", json=_row(2), headers=merchant)]
                while answers[-1].status_code == 503 and len(answers) < 50:
                    answers.append(
                        await api.post("/v1/transactions", json=_row(2), headers=merchant)
                    )
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith("merchant-registry-unavailable")
    assert "retry-after" in refused.headers
    assert ready.status_code == 503
    assert ready.json()["checks"]["merchant_registry"] == "unreachable"
    assert answers[-1].status_code == 202
    assert stored_trans_nums(aws) == [_row(2)["trans_num"]]


async def test_with_cognito_audiences_a_registered_merchant_is_an_audience(
    aws: str, jwks_url: str, token: Callable[..., str]
) -> None:
    # As in AWS: the audience is the token's client_id, and the configured list names the
    # operators' client only; merchants (also ones created after deployment) come from the
    # registry.
    settings = settings_for(
        aws,
        jwks_url,
        jwt_audience_claim="client_id",
        jwt_audience=OPERATORS_CLIENT,
        merchant_registry_miss_refresh_s=0.001,
    )

    def cognito_token(client_id: str) -> str:
        return token(subject=client_id, audience="ignored", extra_claims={"client_id": client_id})

    async with running_api(settings) as api:
        merchant = await api.post(
            "/v1/transactions", json=_row(1), headers=bearer(cognito_token("merchant-1"))
        )
        stranger = await api.post(
            "/v1/transactions", json=_row(2), headers=bearer(cognito_token("stranger"))
        )
        # Created after the API started (cardstream merchant add): an audience at once, its
        # first request reads the registry again.
        register(aws, "newcomer")
        newcomer = await api.post(
            "/v1/transactions", json=_row(3), headers=bearer(cognito_token("newcomer"))
        )
    assert merchant.status_code == 202
    assert stranger.status_code == 401
    assert newcomer.status_code == 202, newcomer.text
    assert sorted(stored_trans_nums(aws)) == sorted([_row(1)["trans_num"], _row(3)["trans_num"]])


# --- single records -------------------------------------------------------------------------


async def test_single_record_is_acknowledged_with_its_stream_receipt_and_no_pan(
    api: httpx.AsyncClient, token: Callable[..., str], aws: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    row = _row(7)
    response = await api.post("/v1/transactions", json=row, headers=bearer(token()))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["trans_num"] == row["trans_num"]
    assert body["status"] == "accepted"
    [(shard, sequence, data)] = stream_envelopes(aws)
    assert (body["shard_id"], body["sequence_number"]) == (shard, sequence)
    envelope = StreamEnvelope.model_validate_json(data)
    assert envelope.trans_num == row["trans_num"]
    assert envelope.client_id == "merchant-1"
    assert envelope.card_last4 == row["cc_num"][-4:]
    assert row["cc_num"] not in data.decode()
    assert row["cc_num"] not in response.text
    assert row["cc_num"] not in caplog.text


async def test_concurrent_single_records_are_all_stored_once(
    api: httpx.AsyncClient, token: Callable[..., str], aws: str
) -> None:
    import asyncio

    headers = bearer(token())
    rows = [_row(n) for n in range(40)]
    responses = await asyncio.gather(
        *(api.post("/v1/transactions", json=row, headers=headers) for row in rows)
    )
    assert [r.status_code for r in responses] == [202] * 40
    assert sorted(stored_trans_nums(aws)) == sorted(r["trans_num"] for r in rows)
    metrics = (await api.get("/metrics")).text
    # Coalescing: the 40 requests shared fewer than 40 PutRecords calls.
    calls = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("cardstream_ingest_kinesis_calls_total{")
    )
    assert 1 <= calls < 40


async def test_invalid_single_record_gets_field_errors_without_values(
    api: httpx.AsyncClient, token: Callable[..., str], aws: str
) -> None:
    row = _row(1, amt="-5.00", lat=91, merchant="m" * 201)
    response = await api.post("/v1/transactions", json=row, headers=bearer(token()))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert {e["field"] for e in problem["errors"]} == {"amt", "lat", "merchant"}
    assert row["cc_num"] not in response.text
    assert "m" * 201 not in response.text
    assert stored_trans_nums(aws) == []


@pytest.mark.parametrize("field", ["cvv", "CVV2", "card_security_code", "pin", "track2"])
async def test_sensitive_authentication_data_is_refused_and_not_echoed(
    api: httpx.AsyncClient,
    token: Callable[..., str],
    aws: str,
    field: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_value = "9173"
    response = await api.post(
        "/v1/transactions", json=_row(1, **{field: secret_value}), headers=bearer(token())
    )
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert (error["field"], error["type"]) == (field, "sensitive_data")
    assert secret_value not in response.text
    assert secret_value not in caplog.text
    batch = await api.post(
        "/v1/transactions/batch",
        json=[_row(2), _row(3, **{field: secret_value})],
        headers=bearer(token()),
    )
    assert [r["status"] for r in batch.json()["results"]] == ["accepted", "rejected"]
    assert secret_value not in batch.text
    assert stored_trans_nums(aws) == [_row(2)["trans_num"]]


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cards=st.lists(written_card_numbers, min_size=9, max_size=9))
async def test_a_card_number_in_any_text_field_is_refused_never_echoed_stored_or_logged(
    api: httpx.AsyncClient,
    token: Callable[..., str],
    aws: str,
    caplog: pytest.LogCaptureFixture,
    cards: list[tuple[str, str]],
) -> None:
    caplog.set_level(logging.DEBUG)
    rows = [
        _row(n, **{field: text})
        for n, ((_, text), field) in enumerate(zip(cards, TransactionIn.TEXT_FIELDS, strict=True))
    ]
    batch = await api.post("/v1/transactions/batch", json=rows, headers=bearer(token()))
    single = await api.post("/v1/transactions", json=rows[1], headers=bearer(token()))
    assert batch.status_code == 200, batch.text
    assert [r["status"] for r in batch.json()["results"]] == ["rejected"] * len(rows)
    for result, field in zip(batch.json()["results"], TransactionIn.TEXT_FIELDS, strict=True):
        assert field in {e["field"] for e in result["errors"]}
    assert single.status_code == 422
    assert "merchant" in {e["field"] for e in single.json()["errors"]}
    seen = ascii_digits(batch.text + single.text + caplog.text)
    stream = ascii_digits(b"".join(data for _, _, data in stream_envelopes(aws)).decode())
    for pan, _ in cards:
        assert pan not in seen
        assert pan not in stream


# --- batches ---------------------------------------------------------------------------------


async def test_json_batch_reports_each_record_in_order_and_rejects_repeats(
    api: httpx.AsyncClient, token: Callable[..., str], aws: str
) -> None:
    rows = [_row(1), _row(2, amt="abc"), _row(3), _row(1), "not an object", _row(4)]
    response = await api.post("/v1/transactions/batch", json=rows, headers=bearer(token()))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (3, 3)
    results = body["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert [r["status"] for r in results] == [
        "accepted",
        "rejected",
        "accepted",
        "rejected",
        "rejected",
        "accepted",
    ]
    assert results[1]["errors"][0]["field"] == "amt"
    assert results[1]["trans_num"] == _row(2)["trans_num"]
    assert results[3]["errors"][0]["type"] == "duplicate"
    assert results[4]["trans_num"] is None
    stream = {
        StreamEnvelope.model_validate_json(d).trans_num: (s, q) for s, q, d in stream_envelopes(aws)
    }
    assert len(stream) == 3
    for result in results:
        if result["status"] == "accepted":
            assert stream[result["trans_num"]] == (result["shard_id"], result["sequence_number"])


async def test_canonical_and_other_forms_of_a_record_put_the_same_facts_on_the_stream(
    api: httpx.AsyncClient, token: Callable[..., str], aws: str
) -> None:
    # _row(1) is canonical (the fast path); the others take the contract's path: numbers
    # where the published form has text, a "T" in the time, an integer wider than the fast
    # path's 64 bits.
    rows = [
        _row(1),
        _row(2, amt=4.97, zip=28654, cc_num=int(_row(2)["cc_num"])),
        _row(3, trans_date_trans_time="2019-01-01T00:00:18", is_fraud="0"),
        _row(4, city_pop=2**70),
    ]
    for kind, body in (
        ("application/json", json.dumps(rows)),
        ("application/x-ndjson", "\n".join(json.dumps(r) for r in rows)),
    ):
        response = await api.post(
            "/v1/transactions/batch",
            content=body,
            headers={**bearer(token()), "Content-Type": kind},
        )
        results = response.json()["results"]
        assert [r["status"] for r in results] == ["accepted"] * 3 + ["rejected"], kind
        assert results[3]["errors"][0]["field"] == "city_pop"
    envelopes = [StreamEnvelope.model_validate_json(d) for _, _, d in stream_envelopes(aws)]
    assert len(envelopes) == 6
    facts = {
        e.model_dump_json(include=set(TransactionIn.model_fields) - {"cc_num", "trans_num"})
        for e in envelopes
    }
    assert len(facts) == 1, "every form of the record carries the same facts"
    assert {e.card_last4 for e in envelopes} == {_row(n)["cc_num"][-4:] for n in (1, 2, 3)}


async def test_ndjson_batch(api: httpx.AsyncClient, token: Callable[..., str], aws: str) -> None:
    lines = [json.dumps(_row(1)), "", "{broken", json.dumps(_row(2))]
    response = await api.post(
        "/v1/transactions/batch",
        content="\n".join(lines) + "\n",
        headers={**bearer(token()), "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["index"], r["status"]) for r in results] == [
        (0, "accepted"),
        (1, "rejected"),
        (2, "accepted"),
    ]
    assert results[1]["errors"][0]["type"] == "json_invalid"
    assert sorted(stored_trans_nums(aws)) == [_row(1)["trans_num"], _row(2)["trans_num"]]


def _published_csv(rows: list[dict[str, Any]]) -> str:
    """The Kaggle file's shape: unnamed index column, integer zips, quoted commas."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["", *KAGGLE_FIELDS])
    for i, row in enumerate(rows):
        writer.writerow([i, *("" if row[f] is None else row[f] for f in KAGGLE_FIELDS)])
    return out.getvalue()


async def test_csv_batch_as_published(
    api: httpx.AsyncClient, token: Callable[..., str], aws: str
) -> None:
    rows = [_row(1), _row(2, zip="1001"), _row(3, dob="2090-01-01")]
    response = await api.post(
        "/v1/transactions/batch",
        content=_published_csv(rows).encode(),
        headers={**bearer(token()), "Content-Type": "text/csv; charset=utf-8"},
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "accepted", "rejected"]
    envelopes = [StreamEnvelope.model_validate_json(d) for _, _, d in stream_envelopes(aws)]
    assert sorted(e.trans_num for e in envelopes) == [_row(1)["trans_num"], _row(2)["trans_num"]]
    assert {e.merchant for e in envelopes} == {"fraud_Rippin, Kub and Mann"}
    assert {e.zip for e in envelopes} == {"28654", "1001"}


async def test_csv_without_header_is_refused(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    headerless = _published_csv([_row(1)]).split("\n", 1)[1]
    response = await api.post(
        "/v1/transactions/batch",
        content=headerless,
        headers={**bearer(token()), "Content-Type": "text/csv"},
    )
    assert response.status_code == 422
    assert response.json()["type"].endswith("csv-header")


# --- limits -----------------------------------------------------------------------------------


async def test_limits(aws: str, jwks_url: str, token: Callable[..., str]) -> None:
    settings = settings_for(aws, jwks_url, max_body_bytes=4096, max_records_per_request=3)
    # The merchant's own rate limit, from its registry entry.
    register(aws, "merchant-1", records_per_second=0.5, burst=7)
    headers = bearer(token())
    async with running_api(settings) as api:
        # Each of the two refused batches costs the one record charged before a body is read.
        too_big = await api.post(
            "/v1/transactions/batch",
            content=b"[" + b" " * 5000 + b"]",
            headers={**headers, "Content-Type": "application/json"},
        )
        assert too_big.status_code == 413
        assert too_big.headers["content-type"] == "application/problem+json"
        too_many = await api.post(
            "/v1/transactions/batch", json=[_row(n) for n in range(4)], headers=headers
        )
        assert too_many.status_code == 413
        assert too_many.json()["type"].endswith("too-many-records")
        wrong_type = await api.post(
            "/v1/transactions", content=b"a=b", headers={**headers, "Content-Type": "text/plain"}
        )
        assert wrong_type.status_code == 415
        # 5 records left: a batch of 3 and two singles pass, the next is limited.
        ok = await api.post(
            "/v1/transactions/batch", json=[_row(n) for n in range(3)], headers=headers
        )
        assert ok.status_code == 200
        for n in (10, 11):
            assert (
                await api.post("/v1/transactions", json=_row(n), headers=headers)
            ).status_code == 202
        limited = await api.post("/v1/transactions", json=_row(12), headers=headers)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        # Buckets are per client: another merchant is not slowed down.
        other = bearer(token(subject="merchant-2"))
        assert (await api.post("/v1/transactions", json=_row(13), headers=other)).status_code == 202
    assert len(stored_trans_nums(aws)) == 6


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amt": "12.345"}, "amt"),
        ({"amt": "99999999999.00"}, "amt"),
        ({"merch_long": -181}, "merch_long"),
        ({"city_pop": -1}, "city_pop"),
        ({"first": "x" * 101}, "first"),
        ({"trans_num": "x" * 65}, "trans_num"),
        ({"cc_num": "4111111111111112"}, "cc_num"),
        ({"state": "North Carolina"}, "state"),
        ({"extra_field": 1}, "extra_field"),
    ],
)
async def test_field_lengths_and_ranges_are_enforced(
    api: httpx.AsyncClient, token: Callable[..., str], change: dict[str, Any], field: str
) -> None:
    response = await api.post("/v1/transactions", json=_row(1, **change), headers=bearer(token()))
    assert response.status_code == 422
    assert field in {e["field"] for e in response.json()["errors"]}


# --- bounded work and malformed bodies (OWASP API4) -------------------------------------------


def _gzip_bomb() -> bytes:
    # 8 MiB of zeros compress to about 8 KiB.
    return gzip.compress(b"0" * (8 << 20))


_VALID_ARRAY = json.dumps([_row(1), _row(2)]).encode()
_DEPTHS = st.sampled_from([2, 3, 64, 1000, 100_000])
malformed_bodies = st.one_of(
    st.binary(max_size=400),
    st.builds(lambda cut: _VALID_ARRAY[:cut], st.integers(0, len(_VALID_ARRAY) - 1)),
    _DEPTHS.map(lambda n: b"[" * n + b"]" * n),
    _DEPTHS.map(lambda n: b"[" + b'{"merchant":' * n + b"1" + b"}" * n + b"]"),
    _DEPTHS.map(lambda n: b"[" * n),
    st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252"]).map(
        lambda codec: json.dumps([_row(1, merchant="Café Ünïcode")], ensure_ascii=False).encode(
            codec
        )
    ),
    st.builds(
        lambda at, junk: _VALID_ARRAY[:at] + junk + _VALID_ARRAY[at:],
        st.integers(0, len(_VALID_ARRAY)),
        st.sampled_from(
            [b"\x00", b"\xff", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\\ud800", b"\\u0000"]
        ),
    ),
    st.sampled_from(
        [
            b"",
            b"\xef\xbb\xbf" + _VALID_ARRAY,
            b"[1e400]",
            b"[NaN]",
            b'[{"city_pop": 1' + b"0" * 5000 + b"}]",
            b'[{"amt": "' + b"9" * 5000 + b'"}]',
            b"[" + b",".join([b"{}"] * 20) + b"]",
            json.dumps([{f"f{i}": i for i in range(500)}]).encode(),
            b"cc_num\n" + b"1," * 40_000,
            b'cc_num\n"' + b"a\n" * 1000,
        ]
    ),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/x-ndjson",
        "text/csv",
        "application/json; charset=utf-8",
        "application/json; charset=utf-16",
        "text/csv; charset=latin-1",
        "text/plain",
        "",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
    ]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=malformed_bodies,
    content_type=content_types,
    path=st.sampled_from(["/v1/transactions", "/v1/transactions/batch"]),
    coding=st.sampled_from([None, "gzip", "br", "identity"]),
)
async def test_a_malformed_body_is_a_4xx_problem_never_a_5xx(
    api: httpx.AsyncClient,
    token: Callable[..., str],
    body: bytes,
    content_type: str,
    path: str,
    coding: str | None,
) -> None:
    headers = {**bearer(token()), "Content-Type": content_type}
    if coding is not None:
        headers["Content-Encoding"] = coding
        if coding == "gzip":
            body = _gzip_bomb()
    response = await api.post(path, content=body, headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == response.status_code


async def test_compressed_bodies_and_other_charsets_are_refused_before_reading(
    api: httpx.AsyncClient, token: Callable[..., str], aws: str
) -> None:
    for headers in (
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        {"Content-Type": "application/json; charset=utf-16"},
        {"Content-Type": "text/csv; charset=iso-8859-1"},
    ):
        response = await api.post(
            "/v1/transactions/batch",
            content=gzip.compress(_VALID_ARRAY),
            headers={**bearer(token()), **headers},
        )
        assert response.status_code == 415, headers
    assert stored_trans_nums(aws) == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"[" + b"{}," * 5 + b'{"broken"'),
        ("application/x-ndjson", b"{}\n" * 5 + b"\xff broken"),
        ("text/csv", b"cc_num\n" + b"1\n" * 5 + b'"broken'),
    ],
)
async def test_the_record_limit_applies_while_reading(
    aws: str, jwks_url: str, token: Callable[..., str], content_type: str, body: bytes
) -> None:
    # What follows the first record past the limit is never read: it cannot be seen to be
    # broken, and the answer is 413, not 400.
    settings = settings_for(aws, jwks_url, max_records_per_request=4, rate_limit_burst=10)
    async with running_api(settings) as api:
        response = await api.post(
            "/v1/transactions/batch",
            content=body,
            headers={**bearer(token()), "Content-Type": content_type},
        )
    assert response.status_code == 413
    assert response.json()["type"].endswith("too-many-records")


async def test_a_single_record_body_is_at_most_64_kib(
    aws: str, jwks_url: str, token: Callable[..., str]
) -> None:
    # Well under the batch body limit, far over any transaction: refused unread.
    record = json.dumps(_row(1, merchant="m" * 70_000)).encode()
    async with running_api(settings_for(aws, jwks_url)) as api:
        response = await api.post(
            "/v1/transactions",
            content=record,
            headers={**bearer(token()), "Content-Type": "application/json"},
        )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert stored_trans_nums(aws) == []


async def test_the_rate_limit_is_charged_before_the_body_is_read(
    aws: str, jwks_url: str, token: Callable[..., str]
) -> None:
    settings = settings_for(aws, jwks_url, max_records_per_request=3)
    register(aws, "merchant-1", records_per_second=0.001, burst=3)
    headers = {**bearer(token()), "Content-Type": "application/json"}
    async with running_api(settings) as api:
        ok = await api.post(
            "/v1/transactions/batch", json=[_row(n) for n in range(3)], headers=headers
        )
        assert ok.status_code == 200
        # The bucket is empty: a body that cannot be read is not read, only refused (429,
        # where reading it would answer 422 for the missing CSV header).
        refused = await api.post(
            "/v1/transactions/batch",
            content=b"no,header\n1,2\n",
            headers={**headers, "Content-Type": "text/csv"},
        )
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
    assert len(stored_trans_nums(aws)) == 3


async def test_healthz_is_answered_while_a_batch_is_being_read(
    aws: str, jwks_url: str, token: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reading of a batch that takes Python work per record (here CSV) is held (a fault
    # injected into the door) until /healthz has answered: were the body read on the event
    # loop, /healthz could not answer meanwhile.
    from cardstream_shared import transaction_input

    reading, release = threading.Event(), threading.Event()
    real = transaction_input.read_batch

    def held(*args: Any, **kwargs: Any) -> Any:
        reading.set()
        assert release.wait(30), "never released"
        return real(*args, **kwargs)

    monkeypatch.setattr(transaction_input, "read_batch", held)
    async with running_api(settings_for(aws, jwks_url)) as api:
        batch = asyncio.create_task(
            api.post(
                "/v1/transactions/batch",
                content=_published_csv([_row(1)]),
                headers={**bearer(token()), "Content-Type": "text/csv"},
            )
        )
        await asyncio.to_thread(reading.wait, 30)
        health = await api.get("/healthz")
        assert not batch.done()
        release.set()
        response = await batch
    assert health.status_code == 200
    assert response.status_code == 200
    assert stored_trans_nums(aws) == [_row(1)["trans_num"]]


# --- F1 and F2: Kinesis failures ----------------------------------------------------------------


async def test_f1_partial_failure_resends_only_failed_entries(
    aws: str, jwks_url: str, token: Callable[..., str]
) -> None:
    rows = [_row(n) for n in range(10)]
    async with running_api(settings_for(aws, jwks_url), faults=["partial", "partial"]) as api:
        response = await api.post("/v1/transactions/batch", json=rows, headers=bearer(token()))
        metrics = (await api.get("/metrics")).text
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 10
    # 10 entries: 5 fail, 5 are resent of which 2 fail again (7 resends in all). Resending
    # whole batches would have stored the first successes again.
    stored = stored_trans_nums(aws)
    assert sorted(stored) == sorted(r["trans_num"] for r in rows)
    retried = 'cardstream_ingest_kinesis_retried_records_total{reason="%s"} 7.0'
    assert retried % "ProvisionedThroughputExceededException" in metrics


async def test_f1_persistent_partial_failure_answers_503_naming_unaccepted_records(
    aws: str, jwks_url: str, token: Callable[..., str]
) -> None:
    rows = [_row(n) for n in range(6)]
    throttled = frozenset({rows[1]["trans_num"], rows[4]["trans_num"]})
    settings = settings_for(aws, jwks_url, put_deadline_s=0.3, retry_after_s=3)
    async with running_api(
        settings, faults=["hot_shard"], repeat_last=True, throttled=throttled
    ) as api:
        response = await api.post("/v1/transactions/batch", json=rows, headers=bearer(token()))
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "3"
    body = response.json()
    statuses = {r["trans_num"]: r["status"] for r in body["results"]}
    accepted = {t for t, s in statuses.items() if s == "accepted"}
    assert {t for t, s in statuses.items() if s == "not_accepted"} == throttled
    assert body["not_accepted"] == 2
    assert body["accepted"] == 4
    # Exactly the acknowledged records are in the stream: nothing claimed that was not stored.
    assert sorted(stored_trans_nums(aws)) == sorted(accepted)


async def test_f1_total_throttling_accepts_nothing(
    aws: str, jwks_url: str, token: Callable[..., str]
) -> None:
    settings = settings_for(aws, jwks_url, put_deadline_s=0.3)
    async with running_api(settings, faults=["throttle"], repeat_last=True) as api:
        single = await api.post("/v1/transactions", json=_row(1), headers=bearer(token()))
        batch = await api.post(
            "/v1/transactions/batch", json=[_row(2), _row(3)], headers=bearer(token())
        )
    assert single.status_code == 503
    assert single.json()["status"] == 503
    assert single.json()["trans_num"] == _row(1)["trans_num"]
    assert "retry-after" in single.headers
    assert batch.status_code == 503
    assert [r["status"] for r in batch.json()["results"]] == ["not_accepted"] * 2
    assert "shard_id" not in batch.json()["results"][0]
    assert stored_trans_nums(aws) == []


async def test_f2_lost_ack_is_resent_and_the_duplicate_carries_the_same_record(
    aws: str, jwks_url: str, token: Callable[..., str]
) -> None:
    async with running_api(settings_for(aws, jwks_url), faults=["lost_ack"]) as api:
        response = await api.post("/v1/transactions", json=_row(5), headers=bearer(token()))
    assert response.status_code == 202
    copies = stream_envelopes(aws)
    assert len(copies) == 2
    # The same bytes twice (same ingest_id and trans_num): the loader's upsert on trans_num
    # makes them one row.
    assert copies[0][2] == copies[1][2]
    assert response.json()["sequence_number"] in {sequence for _, sequence, _ in copies}


# --- errors, docs and operations -----------------------------------------------------------------


async def test_framework_errors_are_problem_json(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    not_found = await api.get("/nope")
    assert (not_found.status_code, not_found.headers["content-type"]) == (
        404,
        "application/problem+json",
    )
    not_allowed = await api.delete("/v1/transactions")
    assert (not_allowed.status_code, not_allowed.json()["status"]) == (405, 405)
    bad_path = await api.get("/v1/transactions/has%20space", headers=bearer(token()))
    assert bad_path.status_code == 422
    assert bad_path.headers["content-type"] == "application/problem+json"
    not_json = await api.post(
        "/v1/transactions",
        content=b"{nope",
        headers={**bearer(token()), "Content-Type": "application/json"},
    )
    assert not_json.status_code == 400
    unread = await api.get("/v1/transactions/abc", headers=bearer(token()))
    # No database configured in this test: the read path says so instead of failing.
    assert unread.status_code == 503
    assert unread.headers["content-type"] == "application/problem+json"


async def test_an_unexpected_error_in_a_write_route_is_a_500_problem_without_trace(
    aws: str, jwks_url: str, token: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    async with running_api(settings_for(aws, jwks_url), faults=["crash"]) as api:
        response = await api.post(
            "/v1/transactions/batch", json=[_row(1), _row(2)], headers=bearer(token())
        )
        metrics = (await api.get("/metrics")).text
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:cardstream:problem:internal-error"
    assert "injected bug" not in response.text
    assert any(r.getMessage() == "unhandled error" and r.exc_info for r in caplog.records)
    assert (
        'cardstream_ingest_requests_total{method="POST",route="/v1/transactions/batch",'
        'status="500"} 1.0'
    ) in metrics


async def test_docs_are_served_without_a_cdn(api: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        html = (await api.get(page)).text
        sources = [s.split('"')[1] for s in html.split("src=")[1:]] + [
            s.split('"')[1] for s in html.split("href=")[1:]
        ]
        assert sources, page
        for source in sources:
            assert source.startswith("/"), source
            asset = await api.get(source)
            assert asset.status_code == 200, source
    schema = (await api.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"
    single = schema["paths"]["/v1/transactions"]["post"]["requestBody"]["content"]
    assert single["application/json"]["examples"]["kaggle_row"]["value"] == kaggle_example()
    batch = schema["paths"]["/v1/transactions/batch"]["post"]["requestBody"]["content"]
    assert set(batch) == {"application/json", "application/x-ndjson", "text/csv"}
    assert "TransactionIn" in schema["components"]["schemas"]
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, success, model in (
        ("/v1/transactions", "202", "Receipt"),
        ("/v1/transactions/batch", "200", "BatchResponse"),
    ):
        operation = schema["paths"][path]["post"]
        assert operation["security"] == [{"BearerAuth": []}]
        responses = operation["responses"]
        assert responses[success]["content"] == {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}
        }
        errors = {"400", "401", "403", "413", "415", "422", "429", "503"}
        assert set(responses) == {success} | errors
        assert all(responses[status]["content"] == problem for status in errors)
    read = schema["paths"]["/v1/transactions/{trans_num}"]["get"]["responses"]
    assert read["404"]["content"] == problem
    for name in ("Problem", "Receipt", "BatchResponse"):
        assert name in schema["components"]["schemas"]


async def test_health_readiness_and_metrics(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok", "checks": None}
    ready = await api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "kinesis": "ok",
        "secrets": "ok",
        "jwks": "ok",
        "merchant_registry": "ok",
    }
    await api.post("/v1/transactions", json=_row(1), headers=bearer(token()))
    await api.post("/v1/transactions", json=_row(2, amt="x"), headers=bearer(token()))
    metrics = (await api.get("/metrics")).text
    assert 'cardstream_ingest_records_total{outcome="accepted",reason=""} 1.0' in metrics
    assert (
        'cardstream_ingest_records_total{outcome="rejected",reason="decimal_parsing"} 1.0'
        in metrics
    )
    assert (
        'cardstream_ingest_requests_total{method="POST",route="/v1/transactions",status="202"} 1.0'
        in metrics
    )


async def test_readiness_fails_when_the_stream_is_missing(aws: str, jwks_url: str) -> None:
    settings = settings_for(aws, jwks_url, stream_name="no-such-stream")
    async with running_api(settings) as api:
        ready = await api.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["kinesis"].startswith("unreachable")


async def test_startup_refuses_a_missing_pan_key(aws: str, jwks_url: str) -> None:
    from ingest_api.runtime import StartupError

    settings = settings_for(aws, jwks_url, pan_key_secret_id="cardstream/absent")
    with pytest.raises(StartupError, match="cardstream/absent"):
        async with running_api(settings):
            pass
