"""``/v1/alerts`` in ingest-api, in process, against moto and a real migrated database.

Alerts are raised the real way (rows loaded by the loader's load path with the rule
monitor as its hook); the API reads and updates them as the api role. Covers scopes (401
and 403), listing filters and paging, per-client visibility, status transitions with their
audit trail, refused transitions (409) and unknown alerts (404).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import boto3
import httpx
import psycopg
import pytest
from prometheus_client import CollectorRegistry
from stream_lines import stream_line

from cardstream_monitoring.monitor import AlertMonitor
from cardstream_monitoring.rules import load_rules
from cardstream_shared import resource_names as names
from cardstream_shared.contract import kaggle_example
from cardstream_shared.jwt_auth import SigningKey, generate_signing_key, issue_token
from cardstream_shared.pan import PanKeyring, luhn_valid
from db_loader.ledger import SourceObject
from db_loader.loader import PartitionCache, load_batch
from db_loader.migrate import bootstrap, with_database
from db_loader.rows import prepare
from ingest_api.app import create_app
from ingest_api.settings import IngestSettings

pytestmark = pytest.mark.functional

ISSUER = "cardstream-local"
AUDIENCE = "cardstream"
KEYRING = PanKeyring({"test-1": secrets.token_bytes(32)}, "test-1")
DAY = dt.datetime(2019, 5, 6, 10, 0, 0)


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return generate_signing_key("alerts-test-key")


@pytest.fixture(scope="module")
def jwks_url(tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey) -> str:
    path = tmp_path_factory.mktemp("alerts-jwks") / "jwks.json"
    path.write_text(json.dumps(signing_key.jwks))
    return f"file://{path}"


@pytest.fixture
def token(signing_key: SigningKey) -> Callable[..., str]:
    def make(*scopes: str, subject: str = "merchant-1") -> str:
        return issue_token(
            signing_key, issuer=ISSUER, audience=AUDIENCE, subject=subject, scopes=scopes
        )

    return make


def _pan(card: int) -> str:
    body = f"5{card:014d}"
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def _probe(card: int, i: int) -> dict[str, Any]:
    when = DAY + dt.timedelta(minutes=2 * i)
    data = kaggle_example()
    data.update(
        trans_num=uuid.uuid4().hex,
        cc_num=_pan(card),
        trans_date_trans_time=when.strftime("%Y-%m-%d %H:%M:%S"),
        unix_time=int(when.replace(tzinfo=dt.UTC).timestamp()),
        amt="1.50",
        merchant=f"fraud_Probe {i}",
    )
    return data


async def _load_card_testing(dsn: str, card: int, client_id: str) -> list[str]:
    """A four-probe card-testing burst on ``card``, loaded with the rules: four alerts."""
    rows = [_probe(card, i) for i in range(4)]
    lines = []
    for number, data in enumerate(rows, start=1):
        lines.append((number, stream_line(data, KEYRING, client_id=client_id)))
    monitor = AlertMonitor(load_rules(), registry=CollectorRegistry())
    pool = await asyncpg.create_pool(dsn, server_settings={"role": names.DB_LOADER_ROLE})
    assert pool is not None
    try:
        result = await load_batch(
            pool,
            SourceObject(bucket="file", key=uuid.uuid4().hex, etag="e"),
            prepare(lines),
            partitions=PartitionCache(),
            hooks=[monitor.after_insert],
        )
    finally:
        await pool.close()
    raised = monitor.after_commit(result)
    assert {a.rule for a in raised} == {"card_testing"}
    return [a.trans_num for a in raised]


@pytest.fixture(scope="module")
def alerts_db(pg_admin_dsn: str) -> Iterator[str]:
    name = f"t_alerts_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(pg_admin_dsn, name)
    bootstrap(url, role_passwords={})
    yield url
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def aws(moto_reset: str) -> str:
    secrets_client = boto3.client(
        "secretsmanager", endpoint_url=moto_reset, region_name="us-east-1"
    )
    secrets_client.create_secret(
        Name=names.PAN_KEY_SECRET, SecretString=PanKeyring.new_secret_string()
    )
    return moto_reset


@asynccontextmanager
async def running_api(
    aws: str, jwks_url: str, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = IngestSettings(
        environment="test",
        aws_endpoint_url=aws,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwks_url=jwks_url,
        database_secret_id=None,
        # Superuser login switched to the api role at connect: exactly the api's grants.
        database_url=f"{database_url}?role={names.DB_API_ROLE}",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4444))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def test_alert_endpoints_refuse_missing_and_insufficient_tokens(
    aws: str, jwks_url: str, alerts_db: str, token: Callable[..., str]
) -> None:
    writer = bearer(token(names.SCOPE_WRITE))
    reader = bearer(token(names.SCOPE_READ))
    async with running_api(aws, jwks_url, alerts_db) as api:
        assert (await api.get("/v1/alerts")).status_code == 401
        bad = await api.get("/v1/alerts", headers=bearer("not-a-jwt"))
        assert bad.status_code == 401
        assert bad.headers["content-type"] == "application/problem+json"
        assert (await api.get("/v1/alerts", headers=writer)).status_code == 403
        assert (await api.get("/v1/alerts/1", headers=writer)).status_code == 403
        patch = await api.patch("/v1/alerts/1", json={"status": "reviewed"})
        assert patch.status_code == 401
        refused = await api.patch("/v1/alerts/1", json={"status": "reviewed"}, headers=reader)
        assert refused.status_code == 403
        assert refused.json()["type"].endswith("forbidden")


async def test_list_filters_pages_and_scopes_alerts_by_client(
    aws: str, jwks_url: str, alerts_db: str, token: Callable[..., str]
) -> None:
    mine = await _load_card_testing(alerts_db, 11, "merchant-1")
    theirs = await _load_card_testing(alerts_db, 12, "merchant-2")
    reader = bearer(token(names.SCOPE_READ))
    reviewer = bearer(token(names.SCOPE_READ, names.SCOPE_ALERTS_REVIEW, subject="analyst-7"))
    async with running_api(aws, jwks_url, alerts_db) as api:
        own = await api.get("/v1/alerts", params={"rule": "card_testing"}, headers=reader)
        assert own.status_code == 200
        seen = {item["trans_num"] for item in own.json()["items"]}
        assert set(mine) <= seen
        assert not seen & set(theirs)
        item = own.json()["items"][0]
        assert item["card_masked"].startswith("****")
        # The same timestamp form as the transaction lookup and the contract.
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", item["trans_date_trans_time"])
        assert len(item["card_last4"]) == 4
        assert item["evidence"]["count"] >= 4
        assert item["severity"] == "high"
        assert item["status"] == "open"

        everything: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3, "severity": "high", "status": "open"}
            if cursor:
                params["cursor"] = cursor
            page = (await api.get("/v1/alerts", params=params, headers=reviewer)).json()
            everything += [i["trans_num"] for i in page["items"]]
            cursor = page.get("next_cursor")
            if cursor is None:
                break
        assert set(mine) | set(theirs) <= set(everything)
        assert len(everything) == len(set(everything))

        none = await api.get("/v1/alerts", params={"rule": "velocity"}, headers=reviewer)
        assert none.json()["items"] == []
        later = await api.get(
            "/v1/alerts", params={"since": "2999-01-01T00:00:00Z"}, headers=reviewer
        )
        assert later.json()["items"] == []
        invalid = await api.get("/v1/alerts", params={"status": "closed"}, headers=reviewer)
        assert invalid.status_code == 422


async def test_status_transitions_are_recorded_with_who_and_when(
    aws: str, jwks_url: str, alerts_db: str, token: Callable[..., str]
) -> None:
    trans_nums = await _load_card_testing(alerts_db, 13, "merchant-1")
    async with running_api(aws, jwks_url, alerts_db) as api:
        reviewer = bearer(token(names.SCOPE_READ, names.SCOPE_ALERTS_REVIEW, subject="analyst-7"))
        lead = bearer(token(names.SCOPE_READ, names.SCOPE_ALERTS_REVIEW, subject="lead-2"))
        listed = await api.get("/v1/alerts", params={"limit": 500}, headers=reviewer)
        alert_id = next(
            i["alert_id"] for i in listed.json()["items"] if i["trans_num"] == trans_nums[0]
        )
        url = f"/v1/alerts/{alert_id}"

        reviewed = await api.patch(
            url, json={"status": "reviewed", "note": "called the cardholder"}, headers=reviewer
        )
        assert reviewed.status_code == 200
        assert reviewed.json()["status"] == "reviewed"
        assert reviewed.json()["status_changed_by"] == "analyst-7"

        escalated = await api.patch(url, json={"status": "escalated"}, headers=lead)
        assert escalated.status_code == 200

        refused = await api.patch(url, json={"status": "open"}, headers=lead)
        assert refused.status_code == 409
        assert refused.json()["current_status"] == "escalated"

        unknown_field = await api.patch(url, json={"status": "dismissed", "by": "x"}, headers=lead)
        assert unknown_field.status_code == 422

        detail = (await api.get(url, headers=reviewer)).json()
        assert detail["status"] == "escalated"
        trail = [(h["from_status"], h["to_status"], h["changed_by"]) for h in detail["history"]]
        assert trail == [("open", "reviewed", "analyst-7"), ("reviewed", "escalated", "lead-2")]
        assert detail["history"][0]["note"] == "called the cardholder"
        first, second = (dt.datetime.fromisoformat(h["changed_at"]) for h in detail["history"])
        assert first <= second

        missing = await api.patch("/v1/alerts/999999999", json={"status": "reviewed"}, headers=lead)
        assert missing.status_code == 404

    # The audit trail is the database's: the api role cannot write or rewrite it.
    api_conn = await asyncpg.connect(alerts_db, server_settings={"role": names.DB_API_ROLE})
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await api_conn.execute(
                "DELETE FROM cardstream.alert_status_change WHERE alert_id = $1", alert_id
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await api_conn.execute(
                "UPDATE cardstream.alert SET rule = 'velocity' WHERE alert_id = $1", alert_id
            )
    finally:
        await api_conn.close()


async def test_dashboard_views_show_open_alerts_to_the_analyst(alerts_db: str) -> None:
    await _load_card_testing(alerts_db, 14, "merchant-3")
    conn = await asyncpg.connect(alerts_db, server_settings={"role": names.DB_ANALYST_ROLE})
    try:
        open_rows = await conn.fetch(
            "SELECT rule, severity, open_alerts FROM cardstream.dash_alerts_open"
        )
        assert ("card_testing", "high") in {(r["rule"], r["severity"]) for r in open_rows}
        latest = await conn.fetch("SELECT card_masked, evidence FROM cardstream.dash_alerts_latest")
        assert latest
        assert all(r["card_masked"].startswith("****") for r in latest)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT card_token FROM cardstream.alert")
    finally:
        await conn.close()


async def test_ids_beyond_the_bigint_range_are_a_client_error_not_a_503(
    aws: str, jwks_url: str, alerts_db: str, token: Callable[..., str]
) -> None:
    # Found by schemathesis: /v1/alerts/1396015984240818651136 answered 503.
    reviewer = bearer(token(names.SCOPE_READ, names.SCOPE_ALERTS_REVIEW))
    huge = str(2**63)
    async with running_api(aws, jwks_url, alerts_db) as api:
        for response in (
            await api.get(f"/v1/alerts/{huge}", headers=reviewer),
            await api.patch(f"/v1/alerts/{huge}", json={"status": "reviewed"}, headers=reviewer),
            await api.get("/v1/alerts", params={"cursor": huge}, headers=reviewer),
        ):
            assert response.status_code == 422, response.text
            assert response.headers["content-type"] == "application/problem+json"
        largest = await api.get(f"/v1/alerts/{2**63 - 1}", headers=reviewer)
        assert largest.status_code == 404
