"""ShardReader under injected Kinesis faults: throttling and expired iterators."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cardstream_shared.metrics import exposition
from stream_writer.metrics import WriterMetrics
from stream_writer.shard_reader import ShardReader

pytestmark = pytest.mark.unit


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "GetRecords")


class FaultyKinesis:
    """Serves records from a list; raises the queued faults first (the fault injector)."""

    def __init__(self, faults: list[str]) -> None:
        self.faults = faults
        self.iterator_requests: list[dict[str, Any]] = []

    async def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        self.iterator_requests.append(kwargs)
        return {"ShardIterator": f"it-{len(self.iterator_requests)}"}

    async def get_records(self, **kwargs: Any) -> dict[str, Any]:
        if self.faults:
            raise _error(self.faults.pop(0))
        seq = str(len(self.iterator_requests) * 10)
        record = {
            "SequenceNumber": seq,
            "Data": b"{}",
            "PartitionKey": "p",
            "ApproximateArrivalTimestamp": dt.datetime.now(dt.UTC),
        }
        return {"Records": [record], "NextShardIterator": "next", "MillisBehindLatest": 0}


def _reader(kinesis: FaultyKinesis, metrics: WriterMetrics) -> ShardReader:
    return ShardReader(
        kinesis,
        stream_name="s",
        shard_id="shard-1",
        limit=100,
        min_interval_s=0.2,
        backoff_max_s=5.0,
        initial_timestamp=None,
        metrics=metrics,
    )


async def test_throttling_backs_off_and_is_counted() -> None:
    metrics = WriterMetrics()
    kinesis = FaultyKinesis(["ProvisionedThroughputExceededException"] * 3)
    reader = _reader(kinesis, metrics)
    reader.start_at("TRIM_HORIZON")
    result = await reader.read()
    assert (result.records, result.shard_end) == ([], False)
    assert reader.next_call_at >= time.monotonic() + 0.1
    body, _ = exposition(metrics.registry)
    assert b"cardstream_writer_read_throttles_total 1.0" in body


async def test_expired_iterator_is_renewed_after_the_last_record_read() -> None:
    kinesis = FaultyKinesis([])
    reader = _reader(kinesis, WriterMetrics())
    reader.start_at("5")
    first = await reader.read()
    assert kinesis.iterator_requests[0]["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"
    assert kinesis.iterator_requests[0]["StartingSequenceNumber"] == "5"
    kinesis.faults.append("ExpiredIteratorException")
    assert (await reader.read()).records == []
    await reader.read()
    renewed = kinesis.iterator_requests[1]
    assert renewed["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"
    assert renewed["StartingSequenceNumber"] == first.records[-1]["SequenceNumber"]


async def test_other_errors_propagate() -> None:
    reader = _reader(FaultyKinesis(["ResourceNotFoundException"]), WriterMetrics())
    reader.start_at("TRIM_HORIZON")
    with pytest.raises(ClientError):
        await reader.read()
