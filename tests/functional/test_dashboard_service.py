"""The dashboard service in-process: configuration, degraded sources, and its JSON feed.

Faults are real: a database port nobody listens on, a stream-writer URL that refuses
connections. Queues are the moto server's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import boto3
import httpx
import psycopg
import pytest
from psycopg import sql

from cardstream.local.ports import free_port
from cardstream_shared import resource_names as names
from cardstream_shared.jwt_auth import SigningKey, generate_signing_key, issue_token
from dashboard.app import create_app
from dashboard.settings import DashboardSettings
from db_loader.migrate import bootstrap, with_credentials

pytestmark = pytest.mark.functional

ISSUER = "cardstream-test"
AUDIENCE = "cardstream"
# What the dashboard needs: it shows every tenant's data.
OPERATOR = (names.SCOPE_READ, names.SCOPE_ALL_TENANTS)


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return generate_signing_key()


@pytest.fixture
def jwks_url(tmp_path: Path, signing_key: SigningKey) -> str:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(signing_key.jwks))
    return f"file://{path}"


def _token(key: SigningKey, *scopes: str) -> str:
    return issue_token(key, issuer=ISSUER, audience=AUDIENCE, subject="analyst", scopes=scopes)


def _settings(jwks_url: str, **values: object) -> DashboardSettings:
    base: dict[str, object] = {
        "environment": "test",
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwks_url": jwks_url,
        "stream_name": None,
        "bucket": None,
    }
    base.update(values)
    return DashboardSettings.model_validate(base)


def _as_dashboard_role(database: str) -> str:
    """The migrated database's URL as the dashboard role (the views, nothing else)."""
    password = uuid.uuid4().hex
    bootstrap(database, role_passwords={names.DB_DASHBOARD_ROLE: password})
    return with_credentials(database, names.DB_DASHBOARD_ROLE, password)


@asynccontextmanager
async def serving(settings: DashboardSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:
            yield client


@pytest.fixture
def queues(moto_reset: str) -> tuple[str, str, str]:
    sqs = boto3.client("sqs", endpoint_url=moto_reset, region_name="us-east-1")
    queue = sqs.create_queue(QueueName=names.LANDED_QUEUE)["QueueUrl"]
    dlq = sqs.create_queue(QueueName=names.LANDED_DLQ)["QueueUrl"]
    for i in range(2):
        sqs.send_message(QueueUrl=queue, MessageBody=f"object {i}")
    sqs.send_message(QueueUrl=dlq, MessageBody="poison")
    return moto_reset, queue, dlq


def test_bad_configuration_refuses_to_start_and_names_the_variable() -> None:
    env = {
        **os.environ,
        "DASHBOARD_JWT_ISSUER": ISSUER,
        "DASHBOARD_JWT_AUDIENCE": AUDIENCE,
        "DASHBOARD_JWKS_URL": "ftp://keys.example/jwks.json",
        "DASHBOARD_PORT": "70000",
    }
    result = subprocess.run(
        [sys.executable, "-m", "dashboard"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "DASHBOARD_JWKS_URL" in result.stderr
    assert "DASHBOARD_PORT" in result.stderr


def test_cookie_is_secure_outside_local_and_test(jwks_url: str) -> None:
    assert _settings(
        "https://issuer.example/jwks.json",
        environment="prod",
        database_url="postgresql://x",
        database_sslmode="verify-full",
        signin_authorize_url="https://sign-in.example/oauth2/authorize",
        signin_token_url="https://relay.example/relay/oauth2/token",
        signin_client_id="operators",
    ).secure_cookie
    assert not _settings(jwks_url, environment="local").secure_cookie


async def test_unreachable_sources_degrade_the_feed_instead_of_failing_it(
    jwks_url: str, signing_key: SigningKey, queues: tuple[str, str, str]
) -> None:
    endpoint, queue, dlq = queues
    dead_port = free_port()
    settings = _settings(
        jwks_url,
        aws_endpoint_url=endpoint,
        database_url=f"postgresql://nobody:nothing@127.0.0.1:{dead_port}/cardstream",
        queue_url=queue,
        dlq_url=dlq,
        writer_metrics_urls=f"http://127.0.0.1:{free_port()}",
        probe_timeout_s=2,
    )
    async with serving(settings) as client:
        health = await client.get("/healthz")
        feed = await client.get(
            "/api/dashboard",
            headers={"Authorization": f"Bearer {_token(signing_key, *OPERATOR)}"},
        )
        metrics = (await client.get("/metrics")).text

    assert health.status_code == 503
    assert health.json()["database"] == "unavailable"
    assert feed.status_code == 200
    body = feed.json()
    assert body["panels"] is None
    assert sorted(body["unavailable"]) == ["database", "stream_lag"]
    # The sources that do answer are still shown.
    assert body["pipeline"]["queue"] == {"waiting": 2, "in_flight": 0}
    assert body["pipeline"]["dlq"] == {"waiting": 1, "in_flight": 0}
    assert body["pipeline"]["stream"] is None
    assert 'cardstream_dashboard_source_errors_total{source="database"} 1.0' in metrics
    assert 'cardstream_dashboard_source_errors_total{source="stream_lag"} 1.0' in metrics


async def test_the_feed_reads_the_views_as_the_dashboard_role(
    jwks_url: str, signing_key: SigningKey, empty_database: str
) -> None:
    settings = _settings(
        jwks_url,
        database_url=_as_dashboard_role(empty_database),
    )
    token = _token(signing_key, *OPERATOR, names.SCOPE_WRITE)
    async with serving(settings) as client:
        assert (await client.get("/healthz")).status_code == 200
        # The session cookie (what signing in leaves) alone opens the page and the feed.
        client.cookies.set("cardstream_dashboard", token)
        page = await client.get("/")
        feed = await client.get("/api/dashboard")

    assert page.status_code == 200
    assert "Real Time Credit Card Fraud Monitoring" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    body = feed.json()
    assert body["unavailable"] == []
    totals = body["panels"]["totals"]
    assert (totals["transactions"], totals["amount"], totals["states"]) == (0, "0.00", 0)
    assert body["panels"]["top_fraud_states"] == []
    assert body["panels"]["trend_daily"] == []
    assert body["panels"]["open_alerts"] == []
    assert body["panels"]["latest_alerts"] == []
    assert body["pipeline"]["stream_lag"] is None


async def test_a_reader_without_the_operator_scope_is_refused_and_sees_nothing(
    jwks_url: str, signing_key: SigningKey, empty_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(
        jwks_url,
        database_url=_as_dashboard_role(empty_database),
    )
    # A merchant's reader: transactions:read reads its own tenant's rows only, and the
    # dashboard shows every tenant's.
    merchant = _token(signing_key, names.SCOPE_READ)
    async with serving(settings) as client:
        feed = await client.get("/api/dashboard", headers={"Authorization": f"Bearer {merchant}"})
        client.cookies.set("cardstream_dashboard", merchant)
        page = await client.get("/")
        cookie_feed = await client.get("/api/dashboard")
        client.cookies.clear()
        operator = await client.get(
            "/api/dashboard", headers={"Authorization": f"Bearer {_token(signing_key, *OPERATOR)}"}
        )

    for refused in (feed, cookie_feed):
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json() == {
            "type": "about:blank",
            "title": "Forbidden",
            "status": 403,
            "detail": f"the token lacks the scope '{names.SCOPE_ALL_TENANTS}'",
        }
        assert f'scope="{names.SCOPE_ALL_TENANTS}"' in refused.headers["www-authenticate"]
    # The page refuses as it does any token without its scopes: no panel, no script.
    assert page.status_code == 403
    assert "Access denied" in page.text
    assert names.SCOPE_ALL_TENANTS in page.text
    assert "dashboard.js" not in page.text
    # A session that cannot open the page can be ended from its refusal.
    assert '<form class="signout" method="post" action="/auth/signout">' in page.text
    refusals = [r for r in caplog.records if getattr(r, "event", "") == "auth_refused"]
    assert [getattr(r, "required_scope", None) for r in refusals] == [names.SCOPE_ALL_TENANTS] * 3
    # The same database answers an operator.
    assert operator.status_code == 200
    assert operator.json()["panels"]["totals"]["transactions"] == 0


async def test_a_lost_database_keeps_the_last_panels_and_says_so(
    jwks_url: str, signing_key: SigningKey, empty_database: str
) -> None:
    settings = _settings(
        jwks_url,
        database_url=_as_dashboard_role(empty_database),
        snapshot_ttl_s=0,
        snapshot_hold_factor=0,
    )
    headers = {"Authorization": f"Bearer {_token(signing_key, *OPERATOR)}"}
    database = empty_database.rsplit("/", 1)[1]
    async with serving(settings) as client:
        first = (await client.get("/api/dashboard", headers=headers)).json()
        # The fault: the dashboard role may no longer connect, and its sessions are cut.
        with psycopg.connect(empty_database, autocommit=True) as admin:
            admin.execute(
                sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC, {}").format(
                    sql.Identifier(database), sql.Identifier(names.DB_DASHBOARD_ROLE)
                )
            )
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE usename = %s AND datname = %s",
                (names.DB_DASHBOARD_ROLE, database),
            )
        second = (await client.get("/api/dashboard", headers=headers)).json()
        health = await client.get("/healthz")
        with psycopg.connect(empty_database, autocommit=True) as admin:
            admin.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(database), sql.Identifier(names.DB_DASHBOARD_ROLE)
                )
            )
        third = (await client.get("/api/dashboard", headers=headers)).json()

    assert first["unavailable"] == []
    assert second["unavailable"] == ["database"]
    assert second["panels"] == first["panels"]
    assert second["panels_as_of"] == first["panels_as_of"]
    assert health.status_code == 503
    # Once the database is back the pool reconnects and the panels are fresh again.
    assert third["unavailable"] == []
    assert third["panels_as_of"] > first["panels_as_of"]


async def test_without_writer_urls_the_lag_comes_from_cloudwatch(
    jwks_url: str, signing_key: SigningKey, moto_reset: str
) -> None:
    cloudwatch = boto3.client("cloudwatch", endpoint_url=moto_reset, region_name="us-east-1")
    kinesis = boto3.client("kinesis", endpoint_url=moto_reset, region_name="us-east-1")
    kinesis.create_stream(StreamName=names.STREAM_NAME, ShardCount=1)
    # What Kinesis publishes for a stream whose consumers lag (moto stores what it is given).
    cloudwatch.put_metric_data(
        Namespace="AWS/Kinesis",
        MetricData=[
            {
                "MetricName": "GetRecords.IteratorAgeMilliseconds",
                "Dimensions": [{"Name": "StreamName", "Value": names.STREAM_NAME}],
                "Value": 4200.0,
                "Unit": "Milliseconds",
                # Kinesis publishes per minute, so the newest point is a minute or two old.
                "Timestamp": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2),
            }
        ],
    )
    settings = _settings(
        jwks_url,
        aws_endpoint_url=moto_reset,
        database_url="postgresql://nobody:nothing@127.0.0.1:9/cardstream",
        stream_name=names.STREAM_NAME,
    )
    headers = {"Authorization": f"Bearer {_token(signing_key, *OPERATOR)}"}
    async with serving(settings) as client:
        body = (await client.get("/api/dashboard", headers=headers)).json()

    assert body["pipeline"]["stream_lag"] == {
        "source": "cloudwatch",
        "max_millis_behind_latest": 4200.0,
        "shards": [],
    }
    assert body["pipeline"]["stream"]["status"] == "ACTIVE"
