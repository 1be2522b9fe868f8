"""stream-writer against the moto server: lease fencing on DynamoDB, and a worker landing a
stream into S3 (objects, metadata, quarantine, checkpoints, health and metrics)."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
from typing import Any

import boto3
import httpx
import msgspec
import pytest

from cardstream.local.aws_resources import create_all
from cardstream.local.ports import free_port
from cardstream_shared import resource_names as names
from cardstream_shared.aws import aio_client
from cardstream_shared.contract import StreamEnvelope, TransactionIn, kaggle_example
from cardstream_shared.pan import PanKeyring, luhn_valid
from stream_writer.lease import SHARD_END, LeaseLostError, LeaseTable, OwnedLease, PendingObject
from stream_writer.settings import WriterSettings
from stream_writer.worker import run_worker

pytestmark = pytest.mark.functional

REGION = "us-east-1"


def _clients(endpoint: str) -> dict[str, Any]:
    return {
        name: boto3.client(name, endpoint_url=endpoint, region_name=REGION)
        for name in ("kinesis", "s3", "sqs", "dynamodb")
    }


def _pans(count: int) -> list[str]:
    pans = []
    for i in range(count):
        body = f"5{i:014d}"
        pans.append(next(body + str(d) for d in range(10) if luhn_valid(body + str(d))))
    return pans


def _entries(count: int, pans: list[str]) -> list[dict[str, Any]]:
    ring = PanKeyring({"test": b"functional-test-key-0123456789ab"}, "test")
    now = dt.datetime.now(dt.UTC)
    entries = []
    for i in range(count):
        pan = pans[i % len(pans)]
        txn = TransactionIn.model_validate(
            {**kaggle_example(), "trans_num": f"f{i:06d}", "cc_num": pan}
        )
        env = StreamEnvelope.from_transaction(
            txn, ring.tokenize(pan), client_id="t", received_at=now
        )
        entries.append({"Data": env.to_json_bytes(), "PartitionKey": env.card_token})
    return entries


def _landed(s3: Any) -> dict[str, tuple[list[bytes], dict[str, str]]]:
    objects = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=names.LANDING_BUCKET):
        for item in page.get("Contents", []):
            response = s3.get_object(Bucket=names.LANDING_BUCKET, Key=item["Key"])
            lines = gzip.decompress(response["Body"].read()).splitlines()
            objects[item["Key"]] = (lines, response["Metadata"])
    return objects


async def test_lease_writes_are_fenced_by_the_counter(moto_reset: str) -> None:
    create_all(_clients(moto_reset), region=REGION, shards=1)
    settings = WriterSettings(
        environment="test", aws_endpoint_url=moto_reset, bucket=names.LANDING_BUCKET
    )
    async with aio_client("dynamodb", settings) as dynamodb:
        zombie = LeaseTable(dynamodb, names.LEASE_TABLE, "zombie")
        thief = LeaseTable(dynamodb, names.LEASE_TABLE, "thief")
        assert await zombie.create("shard-a", "TRIM_HORIZON", ())
        assert not await thief.create("shard-a", "LATEST", ())
        [unowned] = await zombie.list_leases()
        taken = await zombie.take(unowned)
        assert taken is not None
        held = OwnedLease(zombie, taken, 0.0)
        await held.renew()
        await held.record_pending(PendingObject("17", "raw/k", None))
        # The thief steals with the counter it saw; the zombie's next writes are refused.
        [seen] = await thief.list_leases()
        assert seen.pending == PendingObject("17", "raw/k", None)
        stolen = await thief.take(seen)
        assert stolen is not None
        assert stolen.owner_switches == 2  # unowned -> zombie -> thief
        with pytest.raises(LeaseLostError):
            await held.checkpoint("17")
        with pytest.raises(LeaseLostError):
            await held.renew()
        # A take with a stale counter loses too.
        assert await zombie.take(seen) is None
        mine = OwnedLease(thief, stolen, 0.0)
        await mine.checkpoint(SHARD_END, release=True)
        [final] = await thief.list_leases()
        assert (final.owner, final.checkpoint, final.pending) == (None, SHARD_END, None)


async def test_worker_lands_every_record_and_quarantines_the_bad_ones(moto_reset: str) -> None:
    clients = _clients(moto_reset)
    create_all(clients, region=REGION, shards=2)
    pans = _pans(12)
    entries = _entries(300, pans)
    bad_pan = pans[0]
    entries.insert(150, {"Data": f'{{"cc_num": "{bad_pan}"}}'.encode(), "PartitionKey": "raw"})
    # A valid record naming its amount twice: which one a reader takes is the reader's.
    ambiguous = entries[10]["Data"][:-1] + b',"amt":"9999.99"}'
    entries.insert(200, {"Data": ambiguous, "PartitionKey": "raw"})
    clients["kinesis"].put_records(StreamName=names.STREAM_NAME, Records=entries)

    health_port = free_port()
    settings = WriterSettings(
        environment="test",
        aws_endpoint_url=moto_reset,
        bucket=names.LANDING_BUCKET,
        worker_id="functional",
        health_port=health_port,
        flush_max_records=100,
        flush_max_age_s=0.3,
        failover_s=3,
        poll_interval_s=0.2,
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop))

    async def good_records_landed() -> int:
        objects = await asyncio.to_thread(_landed, clients["s3"])
        return sum(len(lines) for key, (lines, _) in objects.items() if key.startswith("raw/"))

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health_port}") as http:
        for _ in range(150):
            if await good_records_landed() >= 300:
                break
            await asyncio.sleep(0.2)
        health = await http.get("/healthz")
        metrics = (await http.get("/metrics")).text
    stop.set()
    await asyncio.wait_for(worker, 30)

    assert health.status_code == 200
    assert health.json()["leases"] == ["shardId-000000000000", "shardId-000000000001"]
    assert 'cardstream_writer_records_out_total{destination="raw"} 300.0' in metrics
    assert "cardstream_writer_leases_held 2.0" in metrics
    assert 'cardstream_writer_flushes_total{trigger="records"}' in metrics

    objects = _landed(clients["s3"])
    raw = {key: value for key, value in objects.items() if key.startswith("raw/")}
    quarantined = {key: value for key, value in objects.items() if key.startswith("quarantine/")}
    trans_nums = [
        msgspec.json.decode(line)["trans_num"] for lines, _ in raw.values() for line in lines
    ]
    assert sorted(trans_nums) == [f"f{i:06d}" for i in range(300)]
    for key, (lines, metadata) in raw.items():
        shard, first, last = key.rsplit("/", 1)[1].removesuffix(".jsonl.gz").rsplit("-", 2)
        assert metadata["record-count"] == str(len(lines))
        assert (metadata["first-sequence"], metadata["last-sequence"]) == (first, last)
        assert metadata["shard-id"] == shard
        assert metadata["writer-id"] == "functional"
        assert metadata["trigger"] in {"records", "age", "bytes", "shutdown"}
        assert int(metadata["bytes"]) == sum(len(line) + 1 for line in lines)
    q_lines = [line for lines, _ in quarantined.values() for line in lines]
    reasons = [msgspec.json.decode(line)["reason"] for line in q_lines]
    assert len(reasons) == 2
    [ambiguous_reason] = [reason for reason in reasons if "amt: duplicate key" in reason]
    assert "cc_num" in next(reason for reason in reasons if reason != ambiguous_reason)
    assert all(bad_pan not in line.decode() for line in q_lines)
    assert sum(int(metadata["record-count"]) for _, metadata in quarantined.values()) == 2

    # Every lease was released on shutdown, checkpointed at the last record of its shard.
    items = clients["dynamodb"].scan(TableName=names.LEASE_TABLE)["Items"]
    for item in items:
        assert "leaseOwner" not in item
        assert "pendingCheckpoint" not in item
        shard_id = item["leaseKey"]["S"]
        iterator = clients["kinesis"].get_shard_iterator(
            StreamName=names.STREAM_NAME, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records = clients["kinesis"].get_records(ShardIterator=iterator)["Records"]
        assert item["checkpoint"]["S"] == records[-1]["SequenceNumber"]


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"WRITER_FLUSH_MAX_AGE_S": "-1"}, "WRITER_FLUSH_MAX_AGE_S"),
        # Renewals must be seen well within the expiry, or live leases would be stolen.
        ({"WRITER_FAILOVER_S": "2", "WRITER_LEASE_RENEW_INTERVAL_S": "1.5"}, "WriterSettings"),
    ],
)
def test_bad_configuration_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variables: dict[str, str],
    named: str,
) -> None:
    from cardstream_shared.settings import load_settings

    monkeypatch.setenv("WRITER_ENVIRONMENT", "test")
    monkeypatch.setenv("WRITER_BUCKET", names.LANDING_BUCKET)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        load_settings(WriterSettings)
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err
