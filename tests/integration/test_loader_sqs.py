"""The loader service against the moto server and real PostgreSQL: notifications in, rows out.

Covers docs/reliability.md F6 (duplicate and reordered notifications), F7 (visibility
timeout shorter than the work: the heartbeat keeps the message), F9 (a PostgreSQL restart
while loading), F10 (poison messages and
unreadable objects end in the DLQ after maxReceiveCount, with metrics, while good objects
load), ``s3:TestEvent`` and URL-encoded keys.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import psycopg
import pytest
from stream_lines import stream_line

from cardstream.generator import iter_rows
from cardstream.local.aws_resources import create_buckets, create_queues
from cardstream.local.embedded_pg import EmbeddedPostgres
from cardstream_shared import resource_names as names
from cardstream_shared.database import create_pool, database_url
from cardstream_shared.pan import PanKeyring
from db_loader.db import APPLICATION_NAME
from db_loader.ledger import SourceObject
from db_loader.loader import LoadResult
from db_loader.migrate import bootstrap, with_credentials, with_database
from db_loader.service import LoaderService
from db_loader.settings import LoaderSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEYRING = PanKeyring({"test-1": secrets.token_bytes(32)}, "test-1")
RECEIVED = dt.datetime(2026, 11, 27, 6, 0, tzinfo=dt.UTC)

# How long the F9 test keeps PostgreSQL away.
DATABASE_AWAY_S = 15


def gz_object(rows: list[dict[str, str]]) -> bytes:
    lines = []
    for row in rows:
        lines.append(stream_line(row, KEYRING, received_at=RECEIVED))
    return gzip.compress(b"\n".join(lines) + b"\n")


class Aws:
    def __init__(self, endpoint: str, visibility_timeout_s: int) -> None:
        kwargs: dict[str, Any] = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        self.s3 = boto3.client("s3", **kwargs)
        self.sqs = boto3.client("sqs", **kwargs)
        self.queue_url, queue_arn, self.dlq_url, self.dlq_arn = create_queues(
            self.sqs, visibility_timeout_s=visibility_timeout_s
        )
        create_buckets(
            self.s3, queue_url=self.queue_url, queue_arn=queue_arn, sqs=self.sqs, region="us-east-1"
        )

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=names.LANDING_BUCKET, Key=key, Body=body)

    def messages(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


@pytest.fixture
def loader_dsn(empty_database: str) -> str:
    password = secrets.token_urlsafe(16)
    bootstrap(empty_database, role_passwords={names.DB_LOADER_ROLE: password})
    return with_credentials(empty_database, names.DB_LOADER_ROLE, password)


def settings_for(aws: Aws, endpoint: str, dsn: str, **overrides: Any) -> LoaderSettings:
    values: dict[str, Any] = {
        "environment": "test",
        "queue_url": aws.queue_url,
        "database_url": dsn,
        "aws_endpoint_url": endpoint,
        "health_port": 0,
        "wait_time_s": 1,
        "visibility_timeout_s": 30,
        "retry_delay_s": 0,
        "concurrency": 2,
        **overrides,
    }
    return LoaderSettings(**values)


@pytest.fixture
async def running() -> AsyncIterator[Callable[[LoaderService], Awaitable[None]]]:
    """Start services in the background; every one is stopped at the end of the test."""
    started: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(service: LoaderService) -> None:
        stop = asyncio.Event()
        started.append((stop, asyncio.create_task(service.run(stop))))

    yield start
    for stop, _ in started:
        stop.set()
    await asyncio.gather(*(task for _, task in started))


def scalar(dsn: str, query: str) -> Any:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


async def until(predicate: Callable[[], bool], timeout_s: float = 60) -> None:
    """Wait for ``predicate`` (blocking calls to moto or PostgreSQL) off the event loop, so
    the services under test keep running while it waits."""

    async def poll() -> None:
        while not await asyncio.to_thread(predicate):  # noqa: ASYNC110 (polls other processes)
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), timeout=timeout_s)


async def test_notifications_load_once_and_messages_are_deleted(
    moto_reset: str, loader_dsn: str, running: Callable[[LoaderService], Awaitable[None]]
) -> None:
    aws = Aws(moto_reset, visibility_timeout_s=30)
    rows = [row.as_dict() for row in iter_rows(600, 11)]
    # A key with a space and a plus: S3 notifications carry it URL-encoded.
    keys = ["raw/dt=2019-01-01/hour=00/shard 1+a.jsonl.gz", "raw/dt=2019-01-01/hour=00/b.jsonl.gz"]
    aws.put(keys[0], gz_object(rows[:400]))
    aws.put(keys[1], gz_object(rows[200:]))
    # F6: the same notification again, and the two in reverse order.
    received = aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10)
    bodies = [m["Body"] for m in received.get("Messages", [])]
    assert any("s3:TestEvent" in b for b in bodies)
    for body in reversed(bodies):
        aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body)
    for message in received.get("Messages", []):
        aws.sqs.change_message_visibility(
            QueueUrl=aws.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    service = LoaderService(settings_for(aws, moto_reset, loader_dsn))
    await running(service)
    await until(lambda: aws.messages(aws.queue_url) == 0)
    assert scalar(loader_dsn, "SELECT count(*) FROM cardstream.transaction") == 600
    assert scalar(loader_dsn, "SELECT count(*) FROM cardstream.object_ledger") == 2
    loaded_keys = scalar(
        loader_dsn, "SELECT array_agg(key ORDER BY key) FROM cardstream.object_ledger"
    )
    assert loaded_keys == sorted(keys)
    assert aws.messages(aws.dlq_url) == 0
    metrics = service.metrics
    assert metrics.rows.labels("loaded")._value.get() == 600
    assert metrics.rows.labels("duplicate")._value.get() == 200
    assert metrics.objects.labels("already_loaded")._value.get() >= 2
    # Creation-to-commit lag and batch latency are observed once per object loaded.
    registry = metrics.registry
    assert registry.get_sample_value("cardstream_loader_lag_seconds_count") == 2
    assert (registry.get_sample_value("cardstream_loader_batch_seconds_count") or 0) >= 2


async def test_poison_messages_end_in_the_dlq_and_good_rows_load(
    moto_reset: str, loader_dsn: str, running: Callable[[LoaderService], Awaitable[None]]
) -> None:
    """F10: bad JSON message, deleted object, oversized object, corrupt gzip; plus an object
    whose bad lines are quarantined while its good lines load."""
    aws = Aws(moto_reset, visibility_timeout_s=30)
    rows = [row.as_dict() for row in iter_rows(50, 12)]
    good = gz_object(rows)
    mixed = gzip.compress(gzip.decompress(good) + b'{"not": "an envelope"}\nnot json\n')
    aws.put("raw/mixed.jsonl.gz", mixed)
    aws.put("raw/deleted.jsonl.gz", good)
    aws.s3.delete_object(Bucket=names.LANDING_BUCKET, Key="raw/deleted.jsonl.gz")
    aws.put("raw/huge.jsonl.gz", good + b"\0" * 5000)
    aws.put("raw/corrupt.jsonl.gz", b"\x1f\x8b" + b"garbage" * 10)
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody="{not json")
    service = LoaderService(
        settings_for(aws, moto_reset, loader_dsn, max_object_bytes=len(good) + 1000)
    )
    await running(service)
    await until(lambda: aws.messages(aws.dlq_url) == 4)
    await until(lambda: aws.messages(aws.queue_url) == 0)
    assert scalar(loader_dsn, "SELECT count(*) FROM cardstream.transaction") == 50
    reasons = scalar(
        loader_dsn,
        "SELECT array_agg(reasons->0->>'type' ORDER BY line_number)"
        " FROM cardstream.quarantined_row",
    )
    assert reasons[-1] == "json_invalid"
    assert len(reasons) == 2
    unreadable = service.metrics.unreadable
    for reason in ("missing", "too_large", "not_gzip"):
        assert unreadable.labels(reason)._value.get() == names.MAX_RECEIVE_COUNT
    assert service.metrics.messages.labels("dead_lettered")._value.get() == 4


class ReceivingLoader(LoaderService):
    """A loader that notes every object SQS handed it, before loading it as usual."""

    def __init__(self, settings: LoaderSettings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.received: list[str] = []

    async def handle(self, source: SourceObject) -> None:
        self.received.append(source.key)
        await super().handle(source)


async def test_heartbeat_keeps_a_message_longer_than_its_visibility_timeout(
    moto_reset: str, loader_dsn: str, running: Callable[[LoaderService], Awaitable[None]]
) -> None:
    """F7: the transaction outlasts the visibility timeout twice over; the heartbeat extends
    it, so a second loader polling the same queue never receives the message (nor does the
    first one a second time), and it is loaded and deleted once."""
    aws = Aws(moto_reset, visibility_timeout_s=2)
    rows = [row.as_dict() for row in iter_rows(100, 13)]
    aws.put("raw/slow.jsonl.gz", gz_object(rows))

    class SlowDatabase:
        """Holds each load's transaction open for two and a half visibility timeouts."""

        async def start(self) -> None:
            return None

        async def stop(self) -> None:
            return None

        async def after_insert(self, conn: Any, result: LoadResult) -> None:
            await conn.execute("SELECT pg_sleep(5)")

        def after_commit(self, result: LoadResult) -> None:
            return None

    # Short polls, as in the local stack: moto serves one request at a time, and a long poll
    # would hold a heartbeat back for as long as it waits.
    settings = settings_for(aws, moto_reset, loader_dsn, visibility_timeout_s=2, wait_time_s=0)
    slow = ReceivingLoader(settings, monitors=[SlowDatabase()])
    other = ReceivingLoader(settings)
    await running(slow)
    await until(lambda: slow.received == ["raw/slow.jsonl.gz"])
    # The second loader polls while the first holds the message: without the heartbeat the
    # message reappears two seconds later and one of the two receives it again.
    await running(other)
    await until(lambda: scalar(loader_dsn, "SELECT count(*) FROM cardstream.object_ledger") == 1)
    await until(lambda: aws.messages(aws.queue_url) == 0)
    assert other.received == []
    assert slow.received == ["raw/slow.jsonl.gz"]
    assert scalar(loader_dsn, "SELECT count(*) FROM cardstream.transaction") == 100
    assert aws.messages(aws.dlq_url) == 0


async def test_a_postgres_restart_while_loading_is_survived(
    moto_reset: str, running: Callable[[LoaderService], Awaitable[None]]
) -> None:
    """F9: the server goes away between two objects; the failing message is retried (not
    deleted), /healthz says so, and once the server is back the object loads cleanly. The
    queue allows its 5 receives and the retry delay is 0: a loader that went on receiving
    while the server is away would spend them all at once and dead-letter a good object."""
    # Not under tmp_path: another pytest run starting meanwhile closes pytest's folders to
    # other users, and the server runs as one when we are root.
    folder = tempfile.TemporaryDirectory(prefix="cardstream-f9-")
    server = EmbeddedPostgres(Path(folder.name) / "data", settings={"fsync": "off"})
    await asyncio.to_thread(server.start)
    try:
        password = secrets.token_urlsafe(16)
        await asyncio.to_thread(
            bootstrap, server.dsn(), role_passwords={names.DB_LOADER_ROLE: password}
        )
        admin = with_database(server.dsn(), names.DB_NAME)
        dsn = with_credentials(admin, names.DB_LOADER_ROLE, password)
        aws = Aws(moto_reset, visibility_timeout_s=30)
        service = LoaderService(settings_for(aws, moto_reset, dsn))
        await running(service)
        rows = [row.as_dict() for row in iter_rows(200, 14)]
        aws.put("raw/before.jsonl.gz", gz_object(rows[:100]))
        count = "SELECT count(*) FROM cardstream.transaction"
        await until(lambda: scalar(admin, count) == 100)

        def health() -> int:
            return httpx.get(f"http://127.0.0.1:{service.health_port}/healthz").status_code

        await asyncio.to_thread(server.stop)
        aws.put("raw/during.jsonl.gz", gz_object(rows[100:]))
        # The first load failed: the message is dead-lettered by now, or the loader stopped
        # receiving until the database answers.
        await until(
            lambda: (
                aws.messages(aws.dlq_url) > 0
                or service.metrics.messages.labels("deferred")._value.get() >= 1
            )
        )
        assert await asyncio.to_thread(health) == 503
        # The fault itself lasts: an RDS reboot or failover keeps the database away for tens of
        # seconds. A loader that went on receiving meanwhile spends the message's receives
        # within this time (it did, when the pause was taken out) and dead-letters it.
        await asyncio.sleep(DATABASE_AWAY_S)
        await asyncio.to_thread(server.start)
        await until(lambda: scalar(admin, count) == 200)
        await until(lambda: aws.messages(aws.queue_url) == 0)
        assert await asyncio.to_thread(health) == 200
        assert scalar(admin, "SELECT count(*) FROM cardstream.object_ledger") == 2
        assert aws.messages(aws.dlq_url) == 0
    finally:
        await asyncio.to_thread(server.stop)
        folder.cleanup()


async def test_credentials_come_from_the_rds_secret(moto_reset: str, empty_database: str) -> None:
    """The loader role's URL is built from its Secrets Manager secret (RDS format)."""
    password = secrets.token_urlsafe(16)
    bootstrap(empty_database, role_passwords={names.DB_LOADER_ROLE: password})
    parts = urlsplit(empty_database)
    secret = {
        "engine": "postgres",
        "username": names.DB_LOADER_ROLE,
        "password": password,
        "host": parts.hostname,
        "port": parts.port,
        "dbname": parts.path.lstrip("/"),
    }
    boto3.client("secretsmanager", endpoint_url=moto_reset, region_name="us-east-1").create_secret(
        Name=names.DB_LOADER_SECRET, SecretString=json.dumps(secret)
    )
    settings = LoaderSettings(
        environment="test",
        queue_url="unused",
        aws_endpoint_url=moto_reset,
        database_secret_id=names.DB_LOADER_SECRET,
        database_sslmode="disable",
    )
    dsn = await database_url(settings)
    assert dsn.endswith("?sslmode=disable")
    pool = await create_pool(
        dsn, application_name=APPLICATION_NAME, min_size=1, max_size=1, statement_timeout_s=5
    )
    try:
        assert await pool.fetchval("SELECT current_user") == names.DB_LOADER_ROLE
    finally:
        await pool.close()
