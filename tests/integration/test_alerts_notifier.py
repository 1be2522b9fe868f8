"""The high-severity alert webhook against a real HTTP receiver on 127.0.0.1.

The receiver checks the HMAC signature the way a customer's endpoint would, and can be
told to fail; the tests assert on what it received. The last test runs the whole chain:
a load with the rule monitor, then the webhook, for high-severity alerts only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from stream_lines import stream_line

from cardstream_monitoring.monitor import AlertMonitor
from cardstream_monitoring.notifier import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AlertNotice,
    WebhookNotifier,
    verify,
)
from cardstream_monitoring.rules import load_rules
from cardstream_shared import resource_names as names
from cardstream_shared.contract import kaggle_example
from cardstream_shared.pan import PanKeyring, luhn_valid
from db_loader.ledger import SourceObject
from db_loader.loader import PartitionCache, load_batch
from db_loader.migrate import bootstrap
from db_loader.rows import prepare

pytestmark = pytest.mark.integration

SECRET = b"webhook-test-secret-0123456789abcdef"


@dataclass
class Receiver:
    url: str = ""
    # Statuses to answer, in order; 204 once exhausted.
    script: list[int] = field(default_factory=list)
    received: list[dict[str, object]] = field(default_factory=list)
    signatures_ok: list[bool] = field(default_factory=list)
    deliveries: list[str] = field(default_factory=list)
    hold: asyncio.Event | None = None


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        state.signatures_ok.append(
            verify(
                SECRET,
                request.headers.get(TIMESTAMP_HEADER, ""),
                body,
                request.headers.get(SIGNATURE_HEADER, ""),
            )
        )
        state.deliveries.append(request.headers.get(DELIVERY_HEADER, ""))
        if state.hold is not None:
            await state.hold.wait()
        status = state.script.pop(0) if state.script else 204
        if status < 300:
            state.received.append(json.loads(body))
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/hook"
    yield state
    if state.hold is not None:
        state.hold.set()
    await runner.cleanup()


def notice(alert_id: int = 1) -> AlertNotice:
    return AlertNotice(
        alert_id=alert_id,
        rule="card_testing",
        severity="high",
        score=1.25,
        trans_num="abc123",
        card_masked="****4242",
        evidence={"count": 5},
        created_at="2026-11-27T07:00:00+00:00",
    )


def notifier(url: str, registry: CollectorRegistry, **kwargs: object) -> WebhookNotifier:
    options: dict[str, object] = {
        "max_attempts": 4,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.02,
        "timeout_s": 2.0,
    }
    options.update(kwargs)
    return WebhookNotifier(url, SECRET, registry=registry, **options)  # type: ignore[arg-type]


def outcome(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(
        "cardstream_loader_alert_notifications_total", {"outcome": name}
    )
    return value or 0.0


async def test_delivers_signed_body_after_transient_failures(receiver: Receiver) -> None:
    receiver.script = [503, 429]
    registry = CollectorRegistry()
    hook = notifier(receiver.url, registry)
    await hook.start()
    assert hook.submit(notice(7))
    await hook.stop(drain_timeout_s=10)
    assert receiver.received == [json.loads(notice(7).body())]
    assert receiver.signatures_ok == [True, True, True]
    # Every retry carries the same delivery id, so the receiver can drop duplicates.
    assert receiver.deliveries == ["alert-7"] * 3
    assert outcome(registry, "delivered") == 1
    assert "4242" in json.dumps(receiver.received)
    assert "cc_num" not in json.dumps(receiver.received)


async def test_a_refusal_is_final_and_counted(receiver: Receiver) -> None:
    receiver.script = [400]
    registry = CollectorRegistry()
    hook = notifier(receiver.url, registry)
    await hook.start()
    hook.submit(notice())
    await hook.stop(drain_timeout_s=10)
    assert len(receiver.deliveries) == 1
    assert receiver.received == []
    assert outcome(registry, "failed") == 1


async def test_gives_up_on_an_unreachable_receiver() -> None:
    registry = CollectorRegistry()
    # Port 9 (discard) on loopback: nothing listens, connections are refused.
    hook = notifier("http://127.0.0.1:9/hook", registry, max_attempts=3)
    await hook.start()
    hook.submit(notice())
    await hook.stop(drain_timeout_s=10)
    assert outcome(registry, "failed") == 1


async def test_submit_never_waits_and_drops_when_full(receiver: Receiver) -> None:
    receiver.hold = asyncio.Event()
    registry = CollectorRegistry()
    hook = notifier(receiver.url, registry, queue_size=2, workers=1)
    await hook.start()
    accepted = [hook.submit(notice(i)) for i in range(1, 6)]
    # One is in flight (held by the receiver) or queued; the queue holds two more at most.
    assert accepted.count(False) >= 2
    assert outcome(registry, "dropped") == accepted.count(False)
    receiver.hold.set()
    await hook.stop(drain_timeout_s=10)
    assert len(receiver.received) == accepted.count(True)


@pytest.fixture
def migrated_db(database_factory: Callable[[], str]) -> str:
    url = database_factory()
    bootstrap(url, role_passwords={})
    return url


def _probe(i: int) -> dict[str, Any]:
    when = dt.datetime(2019, 6, 1, 9, 0) + dt.timedelta(minutes=3 * i)
    data = kaggle_example()
    body = "4999000011112"
    data.update(
        trans_num=uuid.uuid4().hex,
        cc_num=next(body + d for d in "0123456789" if luhn_valid(body + d)),
        trans_date_trans_time=when.strftime("%Y-%m-%d %H:%M:%S"),
        unix_time=int(when.replace(tzinfo=dt.UTC).timestamp()),
        amt="2.00",
        merchant=f"fraud_Probe {i}",
    )
    return data


async def test_loader_monitor_pushes_only_high_severity_alerts(
    receiver: Receiver, migrated_db: str
) -> None:
    registry = CollectorRegistry()
    monitor = AlertMonitor(
        load_rules(), registry=registry, notifier=notifier(receiver.url, registry)
    )
    keyring = PanKeyring({"t": secrets.token_bytes(32)}, "t")
    rows = [_probe(i) for i in range(6)]
    lines = []
    for number, data in enumerate(rows, start=1):
        lines.append((number, stream_line(data, keyring, client_id="m")))
    pool = await asyncpg.create_pool(migrated_db, server_settings={"role": names.DB_LOADER_ROLE})
    assert pool is not None
    await monitor.start()
    try:
        result = await load_batch(
            pool,
            SourceObject(bucket="file", key="probes", etag="e"),
            prepare(lines),
            partitions=PartitionCache(),
            hooks=[monitor.after_insert],
        )
        raised = monitor.after_commit(result)
    finally:
        await monitor.stop()
        await pool.close()
    # Six probes at six merchants in 15 minutes: card testing (high) and velocity (medium).
    assert {(a.rule, a.severity) for a in raised} == {
        ("card_testing", "high"),
        ("velocity", "medium"),
    }
    pushed = {(n["rule"], n["trans_num"]) for n in receiver.received}
    assert pushed == {("card_testing", r["trans_num"]) for r in rows}
    assert all(receiver.signatures_ok)
