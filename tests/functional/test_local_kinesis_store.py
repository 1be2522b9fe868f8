"""The local emulator's Kinesis record store (cardstream.local.moto_kinesis_store) keeps what
AWS documents for sequence numbers, iterators, MillisBehindLatest and retention.

Each test runs twice: against the store, and against moto's own Kinesis (5.2.5). Where moto
is wrong the moto run is an expected failure (strict: if moto is fixed, the test says so and
the patch can go); where moto is right both runs pass. moto runs in-process here so that the
tests can move its clock (``moto.kinesis.models.utcnow``), which both stores read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.kinesis import models

from cardstream.local import moto_kinesis_store

pytestmark = pytest.mark.functional

STREAM = "store-test"
MAX_HASH_KEY = 2**128 - 1


@dataclass
class Clock:
    """moto's clock, moved by the test."""

    now: dt.datetime

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)

    def epoch(self) -> float:
        return self.now.replace(tzinfo=dt.UTC).timestamp()


@dataclass
class Kinesis:
    client: Any
    clock: Clock
    store: str

    def shards(self) -> list[dict[str, Any]]:
        return list(self.client.list_shards(StreamName=STREAM)["Shards"])

    def put(self, data: str, *, shard: int = 0, shards: int = 1) -> str:
        # An explicit hash key in the middle of the shard's range picks the shard.
        key = MAX_HASH_KEY * (2 * shard + 1) // (2 * shards)
        answer = self.client.put_record(
            StreamName=STREAM, Data=data.encode(), PartitionKey="k", ExplicitHashKey=str(key)
        )
        return str(answer["SequenceNumber"])

    def iterator(self, kind: str, shard_id: str | None = None, **kwargs: Any) -> str:
        shard_id = shard_id or self.shards()[0]["ShardId"]
        return str(
            self.client.get_shard_iterator(
                StreamName=STREAM, ShardId=shard_id, ShardIteratorType=kind, **kwargs
            )["ShardIterator"]
        )

    def read(self, iterator: str, limit: int = 100) -> tuple[list[str], dict[str, Any]]:
        answer = self.client.get_records(ShardIterator=iterator, Limit=limit)
        return [record["Data"].decode() for record in answer["Records"]], answer


@pytest.fixture(params=["cardstream", "moto"])
def kinesis(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kinesis]:
    clock = Clock(dt.datetime(2026, 11, 27, 12, 0, 0))
    monkeypatch.setattr(models, "utcnow", clock)
    if request.param == "cardstream":
        for owner, name, replacement in moto_kinesis_store.patches():
            monkeypatch.setattr(owner, name, replacement)
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(variable, "testing")
    with mock_aws():
        client = boto3.client("kinesis", region_name="us-east-1")
        yield Kinesis(client, clock, request.param)


def moto_is_wrong(kinesis: Kinesis, request: pytest.FixtureRequest, why: str) -> None:
    if kinesis.store == "moto":
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"moto 5.2.5: {why}"))


def test_trim_horizon_reads_every_record_in_order(kinesis: Kinesis) -> None:
    kinesis.client.create_stream(StreamName=STREAM, ShardCount=1)
    for i in range(5):
        kinesis.put(f"r{i}")
    data, answer = kinesis.read(kinesis.iterator("TRIM_HORIZON"), limit=3)
    assert data == ["r0", "r1", "r2"]
    more, _ = kinesis.read(answer["NextShardIterator"])
    assert more == ["r3", "r4"]


def test_latest_reads_only_what_is_put_afterwards(kinesis: Kinesis) -> None:
    kinesis.client.create_stream(StreamName=STREAM, ShardCount=1)
    kinesis.put("before")
    iterator = kinesis.iterator("LATEST")
    kinesis.put("after")
    assert kinesis.read(iterator)[0] == ["after"]


def test_at_and_after_sequence_number(kinesis: Kinesis) -> None:
    kinesis.client.create_stream(StreamName=STREAM, ShardCount=1)
    numbers = [kinesis.put(f"r{i}") for i in range(4)]
    at = kinesis.iterator("AT_SEQUENCE_NUMBER", StartingSequenceNumber=numbers[1])
    after = kinesis.iterator("AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=numbers[1])
    assert kinesis.read(at)[0] == ["r1", "r2", "r3"]
    assert kinesis.read(after)[0] == ["r2", "r3"]
    records = kinesis.read(kinesis.iterator("TRIM_HORIZON"))[1]["Records"]
    assert [record["SequenceNumber"] for record in records] == numbers


def test_at_timestamp_starts_at_the_first_record_at_or_after_it(kinesis: Kinesis) -> None:
    kinesis.client.create_stream(StreamName=STREAM, ShardCount=1)
    start = kinesis.clock.epoch()
    kinesis.put("a")
    kinesis.clock.advance(10)
    kinesis.put("b")
    kinesis.put("c")

    def from_time(seconds: float) -> list[str]:
        iterator = kinesis.iterator("AT_TIMESTAMP", Timestamp=start + seconds)
        return kinesis.read(iterator)[0]

    assert from_time(0) == ["a", "b", "c"]
    assert from_time(5) == ["b", "c"]
    assert from_time(10) == ["b", "c"]
    assert from_time(60) == []


def test_sequence_numbers_increase_in_a_shard_and_are_never_shared(
    kinesis: Kinesis, request: pytest.FixtureRequest
) -> None:
    moto_is_wrong(kinesis, request, "every shard numbers its records 1, 2, 3, ...")
    kinesis.client.create_stream(StreamName=STREAM, ShardCount=2)
    first = [int(kinesis.put(f"a{i}", shard=0, shards=2)) for i in range(3)]
    second = [int(kinesis.put(f"b{i}", shard=1, shards=2)) for i in range(3)]
    assert first == sorted(first)
    assert second == sorted(second)
    # PutRecords: "an identifier assigned to the put record, unique to all records in the stream".
    assert not set(first) & set(second)


def test_a_sequence_number_from_another_shard_is_refused(
    kinesis: Kinesis, request: pytest.FixtureRequest
) -> None:
    moto_is_wrong(kinesis, request, "any number is taken as a position in any shard")
    kinesis.client.create_stream(StreamName=STREAM, ShardCount=2)
    number = kinesis.put("a", shard=0, shards=2)
    kinesis.put("b", shard=1, shards=2)
    other = kinesis.shards()[1]["ShardId"]
    with pytest.raises(ClientError) as refused:
        kinesis.iterator("AT_SEQUENCE_NUMBER", other, StartingSequenceNumber=number)
    assert refused.value.response["Error"]["Code"] == "InvalidArgumentException"


def test_a_shard_s_starting_sequence_number_is_fixed(
    kinesis: Kinesis, request: pytest.FixtureRequest
) -> None:
    moto_is_wrong(kinesis, request, "it reports 0 for an empty shard, then its first record's")
    kinesis.client.create_stream(StreamName=STREAM, ShardCount=1)
    starting = kinesis.shards()[0]["SequenceNumberRange"]["StartingSequenceNumber"]
    number = kinesis.put("a")
    assert kinesis.shards()[0]["SequenceNumberRange"]["StartingSequenceNumber"] == starting
    assert int(number) >= int(starting)


def test_millis_behind_latest_is_how_far_behind_now_the_reader_is(
    kinesis: Kinesis, request: pytest.FixtureRequest
) -> None:
    moto_is_wrong(kinesis, request, "it measures from the newest record, not from now")
    kinesis.client.create_stream(StreamName=STREAM, ShardCount=1)
    kinesis.put("a")
    kinesis.clock.advance(1)
    kinesis.put("b")
    kinesis.clock.advance(9)
    data, answer = kinesis.read(kinesis.iterator("TRIM_HORIZON"), limit=1)
    assert data == ["a"]
    # The reader has reached a record that arrived 10 s ago, and more are waiting.
    assert answer["MillisBehindLatest"] == 10_000


def test_millis_behind_latest_is_zero_once_caught_up(kinesis: Kinesis) -> None:
    kinesis.client.create_stream(StreamName=STREAM, ShardCount=1)
    kinesis.put("a")
    kinesis.clock.advance(30)
    data, answer = kinesis.read(kinesis.iterator("TRIM_HORIZON"))
    assert data == ["a"]
    assert answer["MillisBehindLatest"] == 0
    assert kinesis.read(answer["NextShardIterator"])[1]["MillisBehindLatest"] == 0


def test_records_past_the_retention_period_are_trimmed(
    kinesis: Kinesis, request: pytest.FixtureRequest
) -> None:
    moto_is_wrong(kinesis, request, "records are kept for ever")
    kinesis.client.create_stream(StreamName=STREAM, ShardCount=1)
    start = kinesis.clock.epoch()
    kinesis.put("old")
    kinesis.clock.advance(23 * 3600)
    kinesis.put("young")
    kinesis.clock.advance(3600 + 1)  # "old" is now past the 24-hour retention period
    assert kinesis.read(kinesis.iterator("TRIM_HORIZON"))[0] == ["young"]
    # A time before the trim horizon gives the oldest record not trimmed.
    assert kinesis.read(kinesis.iterator("AT_TIMESTAMP", Timestamp=start))[0] == ["young"]


def test_an_iterator_expires_five_minutes_after_it_was_returned(
    kinesis: Kinesis, request: pytest.FixtureRequest
) -> None:
    moto_is_wrong(kinesis, request, "iterators never expire")
    kinesis.client.create_stream(StreamName=STREAM, ShardCount=1)
    kinesis.put("a")
    fresh = kinesis.iterator("TRIM_HORIZON")
    kinesis.clock.advance(299)
    assert kinesis.read(fresh)[0] == ["a"]
    stale = kinesis.iterator("TRIM_HORIZON")
    kinesis.clock.advance(301)
    with pytest.raises(ClientError) as expired:
        kinesis.read(stale)
    assert expired.value.response["Error"]["Code"] == "ExpiredIteratorException"
