"""A moto server whose Kinesis resharding behaves like AWS, for the stream-writer's F5 test.

moto 5.x reshards unlike AWS (checked against moto 5.2.5): after a split or merge it keeps
routing new records to the closed parent (``get_shard_for_key`` ignores ``is_open``), a split
moves the parent's records out and back in, a merge copies them into the child, and a closed
shard never answers with a null ``NextShardIterator``. A consumer then never sees SHARD_END.
This script patches those four points to AWS's documented behaviour, then serves as
``cardstream.local.moto_server`` does:

    python tests/e2e/writer_moto_resharding.py --port N
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from moto.kinesis import models
from moto.kinesis.utils import decompose_shard_iterator
from moto.utilities.utils import md5_hash

from cardstream.local import moto_server

_split = models.Stream.split_shard
_merge = models.Stream.merge_shards
_get_records = models.KinesisBackend.get_records


def _shard_for_key(self: Any, partition_key: str, explicit_hash_key: str) -> Any:
    key = (
        int(explicit_hash_key)
        if explicit_hash_key
        else int(md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
    )
    for shard in self.shards.values():
        if shard.is_open and shard.starting_hash <= key <= shard.ending_hash:
            return shard
    return None


def _split_shard(self: Any, shard_to_split: str, new_starting_hash_key: str) -> None:
    # AWS leaves the parent's records where they are and the children start empty.
    parent = self.shards[shard_to_split]
    kept = OrderedDict(parent.records)
    before = set(self.shards)
    _split(self, shard_to_split, new_starting_hash_key)
    parent.records = kept
    for shard_id in set(self.shards) - before:
        self.shards[shard_id].records = OrderedDict()


def _merge_shards(self: Any, shard_to_merge: str, adjacent_shard_to_merge: str) -> None:
    before = set(self.shards)
    _merge(self, shard_to_merge, adjacent_shard_to_merge)
    for shard_id in set(self.shards) - before:
        self.shards[shard_id].records = OrderedDict()


def _records(self: Any, stream_arn: str | None, shard_iterator: str, limit: int | None) -> Any:
    next_iterator, records, millis = _get_records(self, stream_arn, shard_iterator, limit)
    stream_name, shard_id, _ = decompose_shard_iterator(next_iterator)
    shard = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name).get_shard(shard_id)
    position = int(decompose_shard_iterator(next_iterator)[2])
    if not shard.is_open and position >= shard.get_max_sequence_number():
        # AWS: reading past the last record of a closed shard returns no next iterator.
        return None, records, millis
    return next_iterator, records, millis


models.Stream.get_shard_for_key = _shard_for_key  # type: ignore[method-assign]
models.Stream.split_shard = _split_shard  # type: ignore[method-assign]
models.Stream.merge_shards = _merge_shards  # type: ignore[method-assign]
models.KinesisBackend.get_records = _records  # type: ignore[method-assign]

if __name__ == "__main__":
    moto_server.main()
