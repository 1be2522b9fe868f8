"""The local stack's Kinesis reshards as AWS documents it (cardstream.local.moto_resharding).

Unpatched, moto 5.2.5 kept routing new records to a closed parent, moved the parent's
records into the children, and never ended a closed shard; each assertion below failed.
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest

pytestmark = pytest.mark.integration

MAX_HASH_KEY = 2**128 - 1


def _read_to_end(kinesis: Any, stream: str, shard_id: str) -> tuple[list[bytes], bool]:
    """The shard's records from its start, and whether it ended (no next iterator)."""
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    data: list[bytes] = []
    for _ in range(20):
        answer = kinesis.get_records(ShardIterator=iterator)
        data += [record["Data"] for record in answer["Records"]]
        iterator = answer.get("NextShardIterator")
        if iterator is None:
            return data, True
        if not answer["Records"]:
            return data, False
    return data, False


def _put(kinesis: Any, stream: str, count: int, prefix: str) -> set[str]:
    """Shard ids that ``count`` records with spread-out hash keys went to."""
    shards = set()
    for i in range(count):
        answer = kinesis.put_record(
            StreamName=stream,
            Data=f"{prefix}{i}".encode(),
            PartitionKey=f"card-{i}",
            ExplicitHashKey=str(MAX_HASH_KEY * i // count),
        )
        shards.add(answer["ShardId"])
    return shards


def test_split_and_merge_leave_records_in_place_and_end_closed_shards(
    moto_endpoint: str,
) -> None:
    kinesis = boto3.client("kinesis", endpoint_url=moto_endpoint)
    stream = f"reshard-{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    parent = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["Shards"][0]
    _put(kinesis, stream, 6, "before-")

    kinesis.split_shard(
        StreamName=stream,
        ShardToSplit=parent["ShardId"],
        NewStartingHashKey=str(2**127),
    )
    shards = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["Shards"]
    children = {s["ShardId"] for s in shards if s.get("ParentShardId") == parent["ShardId"]}
    assert len(children) == 2

    # New records go to the open children only.
    assert _put(kinesis, stream, 6, "split-") == children
    # The parent keeps its records and, closed, ends after the last one.
    assert _read_to_end(kinesis, stream, parent["ShardId"]) == (
        [f"before-{i}".encode() for i in range(6)],
        True,
    )
    for child in children:
        data, ended = _read_to_end(kinesis, stream, child)
        assert data
        assert all(item.startswith(b"split-") for item in data)
        assert not ended

    low, high = sorted(children, key=lambda shard_id: int(shard_id.rsplit("-", 1)[1]))
    kinesis.merge_shards(StreamName=stream, ShardToMerge=low, AdjacentShardToMerge=high)
    shards = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["Shards"]
    merged = {s["ShardId"] for s in shards if s.get("ParentShardId") in children}
    assert len(merged) == 1
    assert _put(kinesis, stream, 4, "merged-") == merged
    for child in children:
        data, ended = _read_to_end(kinesis, stream, child)
        assert all(item.startswith(b"split-") for item in data)
        assert ended
    data, _ = _read_to_end(kinesis, stream, merged.pop())
    assert sorted(data) == sorted(f"merged-{i}".encode() for i in range(4))
