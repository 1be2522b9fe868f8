"""cardstream status against the moto server, real PostgreSQL and live /metrics endpoints."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from cardstream.cli import main
from cardstream.local.ports import free_port
from cardstream_shared import resource_names as names
from db_loader.migrate import bootstrap

pytestmark = pytest.mark.integration


@pytest.fixture
def metrics_server() -> Iterator[Any]:
    started: list[Any] = []

    def serve(registry: CollectorRegistry) -> str:
        port = free_port()
        server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
        started.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield serve
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _ingest_registry(accepted: int, rejected: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    records = Counter(
        "cardstream_ingest_records", "records", ["outcome", "reason"], registry=registry
    )
    records.labels(outcome="accepted", reason="").inc(accepted)
    records.labels(outcome="rejected", reason="cc_num").inc(rejected)
    return registry


def _writer_registry(lags: dict[str, float]) -> CollectorRegistry:
    registry = CollectorRegistry()
    gauge = Gauge("cardstream_writer_millis_behind_latest", "lag", ["shard_id"], registry=registry)
    for shard, lag in lags.items():
        gauge.labels(shard_id=shard).set(lag)
    return registry


def _aws(endpoint: str) -> tuple[str, str]:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=names.LANDING_BUCKET)
    for n in range(3):
        s3.put_object(
            Bucket=names.LANDING_BUCKET, Key=f"raw/dt=2019-01-01/hour=00/s-{n}.jsonl.gz", Body=b"x"
        )
    s3.put_object(Bucket=names.LANDING_BUCKET, Key="quarantine/s-9.bin", Body=b"x")
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    queue = sqs.create_queue(QueueName=names.LANDED_QUEUE)["QueueUrl"]
    dlq = sqs.create_queue(QueueName=names.LANDED_DLQ)["QueueUrl"]
    for n in range(2):
        sqs.send_message(QueueUrl=dlq, MessageBody=f"poison {n}")
    sqs.send_message(QueueUrl=queue, MessageBody="waiting")
    return queue, dlq


def _database(dsn: str) -> None:
    bootstrap(dsn, role_passwords={})
    with psycopg.connect(dsn) as conn:
        object_id = conn.execute(
            "INSERT INTO cardstream.object_ledger (bucket, key, etag) VALUES (%s, %s, %s) "
            "RETURNING object_id",
            (names.LANDING_BUCKET, "raw/dt=2019-01-01/hour=00/s-0.jsonl.gz", "etag"),
        ).fetchone()
        assert object_id is not None
        for line in (3, 8):
            conn.execute(
                "INSERT INTO cardstream.quarantined_row (object_id, line_number, reasons) "
                "VALUES (%s, %s, %s)",
                (object_id[0], line, json.dumps([{"field": "amt", "message": "bad"}])),
            )


def _write_stack(state: Path, **info: Any) -> None:
    state.mkdir(exist_ok=True)
    (state / "stack.json").write_text(json.dumps(info))


def test_counts_every_stage_and_names_what_is_unreachable(
    tmp_path: Path,
    moto_reset: str,
    empty_database: str,
    metrics_server: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    queue, dlq = _aws(moto_reset)
    _database(empty_database)
    dead = f"http://127.0.0.1:{free_port()}"
    ingest = [
        metrics_server(_ingest_registry(7, 2)),
        metrics_server(_ingest_registry(5, 0)),
        dead,
    ]
    writer = [metrics_server(_writer_registry({"shardId-0": 120, "shardId-1": 450}))]
    state = tmp_path / "state"
    _write_stack(
        state,
        aws_endpoint_url=moto_reset,
        aws_region="us-east-1",
        bucket=names.LANDING_BUCKET,
        queue_url=queue,
        dlq_url=dlq,
        admin_database_url=empty_database,
        service_urls={"ingest-api": ingest, "stream-writer": writer},
    )

    assert main(["status", "--state-dir", str(state), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)

    values = {key: stage["value"] for key, stage in report.items()}
    assert values == {
        "accepted": 12,
        "objects_landed": 3,
        "queue_backlog": 1,
        "objects_loaded": 1,
        "rows_loaded": 0,
        "quarantined_rows": 2,
        "quarantined_objects": 1,
        "dlq_depth": 2,
        "stream_lag_ms": 450,
    }
    assert report["accepted"]["detail"].startswith(f"2 of 3 instances (unreachable: {dead}")

    assert main(["status", "--state-dir", str(state)]) == 0
    table = capsys.readouterr().out
    assert "DLQ depth" in table
    assert "quarantined rows" in table


def test_unreachable_stages_are_reported_not_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_port = free_port()
    state = tmp_path / "state"
    _write_stack(
        state,
        aws_endpoint_url=f"http://127.0.0.1:{dead_port}",
        queue_url=f"http://127.0.0.1:{dead_port}/000000000000/q",
        admin_database_url=f"postgresql://nobody@127.0.0.1:{dead_port}/cardstream",
        service_urls={"ingest-api": [f"http://127.0.0.1:{dead_port}"]},
    )

    assert main(["status", "--state-dir", str(state)]) == 0

    lines = {line.split("  ")[0].strip(): line for line in capsys.readouterr().out.splitlines()}
    for label in (
        "accepted by ingest-api",
        "objects landed (S3 raw/)",
        "rows loaded",
        "DLQ depth",
        "stream lag (ms, max)",
    ):
        assert "unavailable" in lines[label]
    assert "stack.json lists no stream-writer instance" in lines["stream lag (ms, max)"]
    assert "stack.json has no dlq_url" in lines["DLQ depth"]
    assert "OperationalError" in lines["rows loaded"]


def test_without_stack_json_it_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--state-dir", str(tmp_path)]) == 2
    assert "stack.json does not exist" in capsys.readouterr().err
