"""ShardReader under injected Kinesis faults: throttling and expired iterators."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cardstream_shared.metrics import exposition
from stream_writer import shard_reader
from stream_writer.metrics import WriterMetrics
from stream_writer.shard_reader import ShardReader

pytestmark = pytest.mark.unit


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "GetRecords")


class FakeClock:
    """The reader's monotonic clock and sleep: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


class FaultyKinesis:
    """Serves records from a list; raises the queued faults first (the fault injector).
    Notes when, on the reader's clock, each GetRecords call came."""

    def __init__(self, faults: list[str], clock: FakeClock | None = None) -> None:
        self.faults = faults
        self.clock = clock
        self.iterator_requests: list[dict[str, Any]] = []
        self.calls_at: list[float] = []

    async def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        self.iterator_requests.append(kwargs)
        return {"ShardIterator": f"it-{len(self.iterator_requests)}"}

    async def get_records(self, **kwargs: Any) -> dict[str, Any]:
        if self.clock is not None:
            self.calls_at.append(self.clock.now)
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


class CeilingJitter:
    """Every jittered wait drawn at its ceiling."""

    def uniform(self, low: float, high: float) -> float:
        return high


async def test_throttling_backs_off_more_each_time_and_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(shard_reader, "time", clock)
    monkeypatch.setattr(shard_reader, "asyncio", clock)
    monkeypatch.setattr(shard_reader, "random", CeilingJitter())
    metrics = WriterMetrics()
    kinesis = FaultyKinesis(["ProvisionedThroughputExceededException"] * 3, clock)
    reader = _reader(kinesis, metrics)
    reader.start_at("TRIM_HORIZON")
    results = [await reader.read() for _ in range(5)]
    assert [(bool(r.records), r.shard_end) for r in results] == [(False, False)] * 3 + [
        (True, False)
    ] * 2
    # After the n-th throttle in a row the next call waits up to 0.2 * 2**n (full jitter,
    # drawn here at its ceiling); after a success, the minimum interval again.
    gaps = [later - earlier for earlier, later in itertools.pairwise(kinesis.calls_at)]
    assert gaps == pytest.approx([0.4, 0.8, 1.6, 0.2])
    body, _ = exposition(metrics.registry)
    assert b"cardstream_writer_read_throttles_total 3.0" in body


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
