"""The dashboard as a fraud analyst sees it: headless Chromium against the real service.

The service runs as its own process (``python -m dashboard``) on demo rows from
``cardstream.generator`` loaded into real PostgreSQL through the db-loader's load path,
with its queues, stream and secrets in the moto server. Every panel's rendered values are
compared with SQL run directly on the views, and the page is saved as a screenshot: to
docs/dashboard.png with CARDSTREAM_UPDATE_SCREENSHOT=1, else to the test's temporary folder
(a run of the suite leaves the tree as it found it).

Chromium is Debian's package (``apt-get install chromium``; scripts/bootstrap.sh installs it
with CARDSTREAM_WITH_BROWSER=1). Without it this test fails, saying so: it is part of the
normal suite and must not pass silently by skipping.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from psycopg.rows import dict_row

from cardstream.generator import write_csv
from cardstream.local.aws_resources import create_all, put_secret
from cardstream.local.bootstrap import clients_for
from cardstream.local.ports import free_port, wait_for_port
from cardstream.local.signin_server import DASHBOARD_CLIENT_ID
from cardstream_monitoring.monitor import AlertMonitor
from cardstream_monitoring.rules import load_rules
from cardstream_shared import resource_names as names
from cardstream_shared.database import create_pool
from cardstream_shared.jwt_auth import generate_signing_key, issue_token
from cardstream_shared.pan import PanKeyring
from db_loader.backfill import csv_batches
from db_loader.db import APPLICATION_NAME
from db_loader.loader import PartitionCache, load_batch
from db_loader.migrate import bootstrap, with_credentials
from stream_writer.metrics import WriterMetrics

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ISSUER = "cardstream-test"
AUDIENCE = "cardstream"
# The dashboard shows every tenant's data: operators only.
OPERATOR = (names.SCOPE_READ, names.SCOPE_ALL_TENANTS)
DEMO_ROWS = 4000
# Stream-writer lag per shard, exported with the writer's own metric definitions.
WRITER_LAGS = {"shardId-000000000000": 1240.0, "shardId-000000000001": 420.0}
MAP_BOUNDS = (-125.5, -66.0, 24.0, 49.8)  # west, east, south, north: as in dashboard.js


@dataclass
class Dashboard:
    url: str
    signin_url: str
    dashboard_dsn: str
    read_token: str
    write_only_token: str
    merchant_token: str
    queue_url: str
    dlq_url: str
    endpoint: str
    log_path: Path
    demo_csv: Path


def _demo_csv(path: Path) -> None:
    write_csv(path, DEMO_ROWS, seed=7)
    # One impossible row (a negative amount) so the quarantine tile has something to show.
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, last = rows[0], list(rows[-1])
    last[header.index("amt")] = "-5.00"
    last[header.index("trans_num")] = uuid.uuid4().hex
    last[0] = str(len(rows) - 1)
    with path.open("a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow(last)


async def _load(path: Path, loader_dsn: str) -> None:
    keyring = PanKeyring.from_secret_string(PanKeyring.new_secret_string("test-1"))
    pool = await create_pool(
        loader_dsn,
        application_name=APPLICATION_NAME,
        min_size=1,
        max_size=2,
        statement_timeout_s=60,
    )
    partitions = PartitionCache()
    # The loader's monitoring rules run in the load transaction, as in the service.
    monitor = AlertMonitor(load_rules(), registry=CollectorRegistry())
    try:
        for source, batch in csv_batches(path, keyring, chunk_rows=1000):
            result = await load_batch(
                pool, source, batch, partitions=partitions, hooks=[monitor.after_insert]
            )
            monitor.after_commit(result)
    finally:
        await pool.close()


class _WriterMetrics(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(self.body if self.path == "/metrics" else b"")

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def writer_metrics_url() -> Iterator[str]:
    """/metrics as a stream-writer serves it: the writer's own metric definitions, exported.

    A running writer reports a lag near zero against a quiet stream; these values make the
    panel's figure distinguishable from a default.
    """
    metrics = WriterMetrics()
    for shard, millis in WRITER_LAGS.items():
        metrics.millis_behind_latest.labels(shard_id=shard).set(millis)
    _WriterMetrics.body = generate_latest(metrics.registry)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WriterMetrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def dashboard(
    moto_reset: str, empty_database: str, writer_metrics_url: str, tmp_path: Path
) -> Iterator[Dashboard]:
    clients = clients_for(moto_reset, "us-east-1")
    resources = create_all(clients, region="us-east-1", shards=2)
    sqs = boto3.client("sqs", endpoint_url=moto_reset, region_name="us-east-1")
    for i in range(3):
        sqs.send_message(QueueUrl=resources.queue_url, MessageBody=json.dumps({"demo": i}))

    passwords = {role: uuid.uuid4().hex for role in (names.DB_LOADER_ROLE, names.DB_DASHBOARD_ROLE)}
    bootstrap(empty_database, role_passwords=passwords)
    loader_dsn = with_credentials(
        empty_database, names.DB_LOADER_ROLE, passwords[names.DB_LOADER_ROLE]
    )
    dashboard_dsn = with_credentials(
        empty_database, names.DB_DASHBOARD_ROLE, passwords[names.DB_DASHBOARD_ROLE]
    )
    demo = tmp_path / "demo.csv"
    _demo_csv(demo)
    asyncio.run(_load(demo, loader_dsn))

    database = dashboard_dsn.rsplit("/", 1)[1]
    parts = psycopg.conninfo.conninfo_to_dict(dashboard_dsn)
    put_secret(
        clients["secretsmanager"],
        names.DB_DASHBOARD_SECRET,
        json.dumps(
            {
                "engine": "postgres",
                "username": names.DB_DASHBOARD_ROLE,
                "password": passwords[names.DB_DASHBOARD_ROLE],
                "host": parts["host"],
                "port": int(parts["port"]),
                "dbname": database,
            }
        ),
        overwrite=True,
    )
    key = generate_signing_key()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(key.jwks))
    read_token = issue_token(
        key, issuer=ISSUER, audience=AUDIENCE, subject="fraud-analyst", scopes=OPERATOR
    )
    merchant_token = issue_token(
        key, issuer=ISSUER, audience=AUDIENCE, subject="merchant-app", scopes=[names.SCOPE_READ]
    )
    write_only = issue_token(
        key, issuer=ISSUER, audience=AUDIENCE, subject="merchant-app", scopes=[names.SCOPE_WRITE]
    )

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # The local stack's sign-in server (Cognito's hosted UI in AWS), as `cardstream up` runs it.
    put_secret(clients["secretsmanager"], names.JWT_SIGNING_KEY_SECRET, key.to_secret_string())
    signin_port = free_port()
    signin_url = f"http://127.0.0.1:{signin_port}"
    signin_log = (tmp_path / "sign-in.log").open("wb")
    signin = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cardstream.local.signin_server",
            *("--port", str(signin_port), "--aws-endpoint-url", moto_reset),
            *("--signing-key-secret", names.JWT_SIGNING_KEY_SECRET),
            *("--issuer", ISSUER, "--audience", AUDIENCE),
            *("--redirect-uri", f"{url}{names.SIGNIN_CALLBACK_PATH}"),
            *("--person", "fraud-analyst"),
            *(arg for scope in OPERATOR for arg in ("--scope", scope)),
        ],
        stdout=signin_log,
        stderr=subprocess.STDOUT,
    )
    env = {
        **os.environ,
        "DASHBOARD_ENVIRONMENT": "test",
        "DASHBOARD_HOST": "127.0.0.1",
        "DASHBOARD_PORT": str(port),
        "DASHBOARD_AWS_ENDPOINT_URL": moto_reset,
        "DASHBOARD_DATABASE_SECRET_ID": names.DB_DASHBOARD_SECRET,
        "DASHBOARD_JWT_ISSUER": ISSUER,
        "DASHBOARD_JWT_AUDIENCE": AUDIENCE,
        "DASHBOARD_JWKS_URL": f"file://{jwks}",
        "DASHBOARD_QUEUE_URL": resources.queue_url,
        "DASHBOARD_DLQ_URL": resources.dlq_url,
        "DASHBOARD_STREAM_NAME": resources.stream_name,
        "DASHBOARD_BUCKET": resources.landing_bucket,
        "DASHBOARD_WRITER_METRICS_URLS": writer_metrics_url,
        "DASHBOARD_PUBLIC_URL": url,
        "DASHBOARD_SIGNIN_AUTHORIZE_URL": f"{signin_url}/oauth2/authorize",
        "DASHBOARD_SIGNIN_TOKEN_URL": f"{signin_url}/oauth2/token",
        "DASHBOARD_SIGNIN_CLIENT_ID": DASHBOARD_CLIENT_ID,
    }
    log_path = tmp_path / "dashboard.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "dashboard"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port("127.0.0.1", signin_port, timeout_s=60, alive=lambda: signin.poll() is None)
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "dashboard not healthy in 60 s"
            time.sleep(0.2)
        yield Dashboard(
            url=url,
            signin_url=signin_url,
            dashboard_dsn=dashboard_dsn,
            read_token=read_token,
            write_only_token=write_only,
            merchant_token=merchant_token,
            queue_url=resources.queue_url,
            dlq_url=resources.dlq_url,
            endpoint=moto_reset,
            log_path=log_path,
            demo_csv=demo,
        )
    finally:
        process.terminate()
        try:
            # uvicorn re-raises the signal after its graceful shutdown, hence -SIGTERM.
            assert process.wait(20) in (0, -signal.SIGTERM)
            assert "dashboard stopping" in log_path.read_text(errors="replace")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            signin.terminate()
            signin.wait(20)
            signin_log.close()


def _sql(dsn: str, query: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def _count(n: int) -> str:
    return f"{n:,}"


def _amount(value: Decimal) -> str:
    return f"${value:,.2f}"


def _rate(value: Decimal | None) -> str:
    # The page formats the float it receives with toFixed(2): half away from zero on the
    # exact binary value, which Decimal(float) reproduces.
    if value is None:
        return "–"
    percent = Decimal(float(value) * 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{percent}%"


def _table(page: Any, table_id: str) -> list[list[str]]:
    rows: list[list[str]] = page.eval_on_selector_all(
        f"#{table_id} tbody tr",
        "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))",
    )
    return rows


def _chart(page: Any, canvas_id: str) -> dict[str, Any]:
    data: dict[str, Any] = page.evaluate(
        """id => {
            const chart = Chart.getChart(id);
            return {
                labels: chart.data.labels,
                datasets: chart.data.datasets.map(d => ({label: d.label, data: d.data})),
            };
        }""",
        canvas_id,
    )
    return data


def _chromium() -> Any:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium, or "
            "CARDSTREAM_WITH_BROWSER=1 scripts/bootstrap.sh); the dashboard browser test needs it"
        )
    from playwright.sync_api import sync_playwright

    return sync_playwright()


def test_every_panel_matches_the_views_and_the_page_is_saved(
    dashboard: Dashboard, repo_root: Path, tmp_path: Path
) -> None:
    dsn = dashboard.dashboard_dsn
    (totals,) = _sql(dsn, "SELECT * FROM cardstream.dash_totals")
    assert totals["transactions"] == DEMO_ROWS
    assert totals["fraud_transactions"] > 0

    requested: list[str] = []
    console_errors: list[str] = []
    with _chromium() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1480, "height": 1000}, timezone_id="UTC"
            )
            page = context.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.on(
                "console",
                lambda message: (
                    console_errors.append(message.text) if message.type == "error" else None
                ),
            )
            # The one link `cardstream up` prints: the browser signs in on its way (code and
            # PKCE at the sign-in server) and lands on the page with its session cookie.
            page.goto(f"{dashboard.url}/")
            page.wait_for_selector("body[data-state=loaded]", timeout=30_000)
            assert page.url == f"{dashboard.url}/"

            _check_totals(page, totals)
            _check_top_lists(page, dsn)
            _check_latest_fraud(page, dsn)
            _check_alerts(page, dsn)
            _check_charts(page, dsn, totals)
            _check_map(page, dsn)
            _check_pipeline(page, dashboard)
            cookies = context.cookies()
            (session,) = [c for c in cookies if c["name"] == "cardstream_dashboard"]
            assert session["httpOnly"] is True
            assert session["sameSite"] == "Strict"
            assert not [url for url in requested if session["value"] in url]

            # No card number the demo was fed appears anywhere on the page or in its data.
            with dashboard.demo_csv.open(newline="") as handle:
                pans = {row["cc_num"] for row in csv.DictReader(handle)}
            shown = page.content() + json.dumps(
                page.evaluate("() => fetch('/api/dashboard').then(r => r.json())")
            )
            assert not {pan for pan in pans if pan in shown}

            update_docs = os.environ.get("CARDSTREAM_UPDATE_SCREENSHOT") == "1"
            shot = (repo_root / "docs" if update_docs else tmp_path) / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)

            # Signing out as a person does: the page's button posts from the page (its
            # policy allows the form, the browser names the page's origin); the session
            # cookie is gone and the next page load goes through sign-in again.
            page.click("form.signout button")
            page.wait_for_selector("text=Signed out")
            assert page.url == f"{dashboard.url}/auth/signout"
            assert not [c for c in context.cookies() if c["name"] == "cardstream_dashboard"]
            page.goto(f"{dashboard.url}/")
            page.wait_for_selector("body[data-state=loaded]", timeout=30_000)
        finally:
            browser.close()

    assert console_errors == []
    # Everything the page loaded came from the dashboard itself: no CDN, no map tiles; the
    # sign-in server was only visited to sign in (before and after signing out).
    assert requested
    visited = [url for url in requested if not url.startswith(dashboard.url + "/")]
    assert all(url.startswith(f"{dashboard.signin_url}/oauth2/authorize?") for url in visited)
    assert len(visited) == 2, visited


def _check_totals(page: Any, totals: dict[str, Any]) -> None:
    assert page.text_content("#kpi-transactions") == _count(totals["transactions"])
    assert page.text_content("#kpi-amount") == _amount(totals["amount"])
    assert page.text_content("#kpi-fraud") == _count(totals["fraud_transactions"])
    assert page.text_content("#kpi-states") == _count(totals["states"])
    assert page.text_content("#kpi-fraud-sub") == (
        f"fraud rate {_rate(totals['fraud_rate'])} of labelled"
    )
    assert page.text_content("#kpi-amount-sub") == (
        f"fraud-labelled {_amount(totals['fraud_amount'])}"
    )


def _check_top_lists(page: Any, dsn: str) -> None:
    for view, key, table in (
        ("dash_fraud_by_state", "state", "table-top-states"),
        ("dash_fraud_by_merchant", "merchant", "table-top-merchants"),
    ):
        expected = _sql(
            dsn,
            f"SELECT {key} AS name, fraud_transactions, fraud_amount, fraud_rate"
            f" FROM cardstream.{view} WHERE fraud_rank <= 5 AND fraud_transactions > 0"
            " ORDER BY fraud_rank",
        )
        assert len(expected) == 5
        assert _table(page, table) == [
            [
                str(i + 1),
                row["name"],
                _count(row["fraud_transactions"]),
                _amount(row["fraud_amount"]),
                _rate(row["fraud_rate"]),
            ]
            for i, row in enumerate(expected)
        ]


def _check_latest_fraud(page: Any, dsn: str) -> None:
    expected = _sql(
        dsn,
        "SELECT trans_num, trans_date_trans_time, card_masked, merchant, category, amt, state"
        " FROM cardstream.dash_fraud_transactions"
        " ORDER BY trans_date_trans_time DESC, trans_num LIMIT 10",
    )
    assert len(expected) == 10
    assert _table(page, "table-latest-fraud") == [
        [
            r["trans_date_trans_time"].isoformat(sep=" ", timespec="seconds"),
            r["card_masked"],
            r["merchant"],
            r["category"],
            r["state"],
            _amount(r["amt"]),
            r["trans_num"],
        ]
        for r in expected
    ]
    assert all(re.fullmatch(r"\*{4}\d{4}", r["card_masked"]) for r in expected)


def _check_alerts(page: Any, dsn: str) -> None:
    open_alerts = _sql(dsn, "SELECT rule, severity, open_alerts FROM cardstream.dash_alerts_open")
    assert open_alerts, "the demo rows should trip some rules"
    chart = _chart(page, "chart-alerts")
    rules = sorted({r["rule"] for r in open_alerts})
    assert chart["labels"] == rules
    by_severity = {d["label"]: d["data"] for d in chart["datasets"]}
    for row in open_alerts:
        assert by_severity[row["severity"]][rules.index(row["rule"])] == row["open_alerts"]
    total = sum(r["open_alerts"] for r in open_alerts)
    assert page.text_content("#alerts-open-total") == f"{_count(total)} open"

    latest = _sql(
        dsn,
        "SELECT rule, severity, score, status, card_masked, merchant, amt"
        " FROM cardstream.dash_alerts_latest ORDER BY alert_id DESC LIMIT 8",
    )
    shown = _table(page, "table-latest-alerts")
    assert [row[1:8] for row in shown] == [
        [
            r["rule"],
            r["severity"],
            str(r["score"]),
            r["status"],
            r["card_masked"],
            r["merchant"],
            _amount(r["amt"]),
        ]
        for r in latest
    ]


def _check_charts(page: Any, dsn: str, totals: dict[str, Any]) -> None:
    categories = _sql(
        dsn,
        "SELECT category, fraud_transactions FROM cardstream.dash_fraud_by_category"
        " ORDER BY fraud_rank",
    )
    chart = _chart(page, "chart-category")
    assert chart["labels"] == [r["category"] for r in categories]
    assert chart["datasets"][0]["data"] == [r["fraud_transactions"] for r in categories]

    daily = _sql(
        dsn,
        "SELECT day, transactions, fraud_transactions FROM cardstream.dash_volume_daily"
        " ORDER BY day",
    )
    chart = _chart(page, "chart-daily")
    assert chart["labels"] == [r["day"].isoformat() for r in daily]
    assert chart["datasets"][0]["data"] == [r["transactions"] for r in daily]
    assert chart["datasets"][1]["data"] == [r["fraud_transactions"] for r in daily]
    assert sum(chart["datasets"][0]["data"]) == totals["transactions"]

    hourly = _sql(
        dsn,
        "SELECT transactions, fraud_transactions FROM cardstream.dash_volume_hourly"
        " WHERE hour > (SELECT last_transaction_at FROM cardstream.dash_totals)"
        " - interval '48 hours' ORDER BY hour",
    )
    chart = _chart(page, "chart-hourly")
    assert chart["datasets"][0]["data"] == [r["transactions"] for r in hourly]
    assert chart["datasets"][1]["data"] == [r["fraud_transactions"] for r in hourly]

    by_hour = _sql(
        dsn,
        "SELECT hour_of_day, transactions FROM cardstream.dash_fraud_by_hour_of_day"
        " ORDER BY hour_of_day",
    )
    chart = _chart(page, "chart-hour-of-day")
    assert chart["labels"] == [f"{r['hour_of_day']:02d}" for r in by_hour]
    assert chart["datasets"][0]["data"] == [r["transactions"] for r in by_hour]

    minutes = _sql(
        dsn,
        "SELECT rows_loaded FROM cardstream.dash_freshness_by_minute ORDER BY minute",
    )
    chart = _chart(page, "chart-freshness")
    assert chart["datasets"][0]["data"] == [r["rows_loaded"] for r in minutes]
    assert sum(chart["datasets"][0]["data"]) == totals["transactions"]


def _check_map(page: Any, dsn: str) -> None:
    west, east, south, north = MAP_BOUNDS
    cells = _sql(
        dsn,
        "SELECT lat, long, transactions, fraud_transactions FROM cardstream.dash_fraud_by_location",
    )
    inside = sorted(
        (float(c["long"]), float(c["lat"]), c["transactions"], c["fraud_transactions"])
        for c in cells
        if west <= c["long"] <= east and south <= c["lat"] <= north
    )
    chart = _chart(page, "chart-map")
    drawn = sorted(
        (p["x"], p["y"], p["transactions"], p["fraud"]) for p in chart["datasets"][0]["data"]
    )
    assert drawn == inside
    fraud_points = chart["datasets"][1]["data"]
    assert sum(p["fraud"] for p in fraud_points) == sum(c[3] for c in inside)
    note = page.text_content("#map-note")
    assert note is not None
    assert note.startswith(f"{_count(len(inside))} locations drawn")
    outside = len(cells) - len(inside)
    assert (f"{_count(outside)} outside the contiguous US" in note) == (outside > 0)


def _check_pipeline(page: Any, dashboard: Dashboard) -> None:
    sqs = boto3.client("sqs", endpoint_url=dashboard.endpoint, region_name="us-east-1")
    waiting = int(
        sqs.get_queue_attributes(
            QueueUrl=dashboard.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
    )
    assert waiting >= 3
    assert page.text_content("#pipe-waiting") == _count(waiting)
    assert page.text_content("#pipe-dlq") == "0"
    assert page.text_content("#pipe-lag") == f"{max(WRITER_LAGS.values()) / 1000:.1f} s"
    assert page.text_content("#pipe-lag-sub") == "2 shards · 1/1 writers"
    (loads,) = _sql(dashboard.dashboard_dsn, "SELECT * FROM cardstream.dash_pipeline")
    assert loads["rows_quarantined"] == 1
    assert page.text_content("#pipe-quarantined") == "1"
    last_load = page.text_content("#pipe-last-load")
    assert last_load == loads["last_object_loaded_at"].astimezone(UTC).strftime("%H:%M:%S")


def test_access_needs_the_operator_scopes_and_refusals_are_audited(dashboard: Dashboard) -> None:
    with httpx.Client(base_url=dashboard.url, timeout=10) as client:
        page = client.get("/")
        # No session: the browser is sent to sign in.
        assert page.status_code == 303
        assert page.headers["location"] == "/auth/signin"
        api = client.get("/api/dashboard")
        assert api.status_code == 401
        assert api.headers["content-type"] == "application/problem+json"
        forged = client.get("/api/dashboard", headers={"Authorization": "Bearer not.a.token"})
        assert forged.status_code == 401
        writer = client.get(
            "/api/dashboard", headers={"Authorization": f"Bearer {dashboard.write_only_token}"}
        )
        assert writer.status_code == 403
        # A merchant's reader (its own tenant only) sees none of every tenant's rows.
        merchant = client.get(
            "/api/dashboard", headers={"Authorization": f"Bearer {dashboard.merchant_token}"}
        )
        assert merchant.status_code == 403
        assert "panels" not in merchant.json()
        assert names.SCOPE_ALL_TENANTS in merchant.json()["detail"]

        ok = client.get(
            "/api/dashboard", headers={"Authorization": f"Bearer {dashboard.read_token}"}
        )
        assert ok.status_code == 200
        body = ok.json()
        assert body["viewer"] == "fraud-analyst"
        assert body["unavailable"] == []
        assert body["panels"]["totals"]["transactions"] == DEMO_ROWS

        # A token in the address is never taken: no session comes of it.
        entry = client.get(f"/?token={dashboard.read_token}")
        assert entry.status_code == 400
        assert "set-cookie" not in entry.headers
        assert "Content-Security-Policy" in entry.headers

    log = dashboard.log_path.read_text(errors="replace")
    refusals = [json.loads(line) for line in log.splitlines() if '"auth_refused"' in line]
    assert [r["status"] for r in refusals] == [401, 401, 403, 403]
    assert {r["subject"] for r in refusals if r["status"] == 403} == {"merchant-app"}
    assert [r["required_scope"] for r in refusals if r["status"] == 403] == [
        names.SCOPE_READ,
        names.SCOPE_ALL_TENANTS,
    ]
    assert dashboard.read_token not in log
    assert dashboard.write_only_token not in log
    assert dashboard.merchant_token not in log
    assert "token=" not in log
