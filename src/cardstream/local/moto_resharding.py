"""Kinesis resharding in the local emulator as AWS documents it.

moto 5.x reshards unlike AWS (checked against moto 5.2.5): after a split or merge it keeps
routing new records to the closed parent (``get_shard_for_key`` ignores ``is_open``), a split
moves the parent's records out and back in, and a merge copies them into the child. A
consumer then could not rely on a parent's records staying in the parent, so the
stream-writer's lease logic (children only after their parents are finished) could not be
tried locally. :func:`install` patches those three points: new records go to the open shard
whose range holds their key, and every shard keeps its records. That a closed shard read to
its end answers with a null ``NextShardIterator`` (SHARD_END) is the record store's part
(``moto_kinesis_store``). The local stack's moto server (``cardstream.local.moto_server``)
installs both before it serves, and ``tests/integration/test_local_moto_resharding.py``
fails if a moto upgrade moves them.
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    """Patch moto's Kinesis models in this process (idempotent)."""
    from moto.kinesis import models
    from moto.utilities.utils import md5_hash

    if getattr(models.Stream.get_shard_for_key, "cardstream_patched", False):
        return
    shard_for_key_unpatched = models.Stream.get_shard_for_key
    split = models.Stream.split_shard
    merge = models.Stream.merge_shards

    def shard_for_key(self: Any, partition_key: str, explicit_hash_key: str) -> Any:
        # moto's own look-up checks the key and the hash key, and is right until a reshard
        # closes a shard: AWS routes a record to the open shard whose range holds its key.
        shard = shard_for_key_unpatched(self, partition_key, explicit_hash_key)
        if shard is None or shard.is_open:
            return shard
        key = (
            int(explicit_hash_key)
            if explicit_hash_key
            else int(md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
        )
        for candidate in self.shards.values():
            if candidate.is_open and candidate.starting_hash <= key <= candidate.ending_hash:
                return candidate
        return None

    def split_shard(self: Any, shard_to_split: str, new_starting_hash_key: str) -> None:
        # AWS leaves the parent's records where they are and the children start empty:
        # moto's split, shown no records, moves none.
        parent = self.shards[shard_to_split]
        kept, parent.records = parent.records, {}
        try:
            split(self, shard_to_split, new_starting_hash_key)
        finally:
            parent.records = kept

    def merge_shards(self: Any, shard_to_merge: str, adjacent_shard_to_merge: str) -> None:
        # The parents keep their records; the child starts empty.
        parents = [self.shards[shard_to_merge], self.shards[adjacent_shard_to_merge]]
        kept = [parent.records for parent in parents]
        for parent in parents:
            parent.records = {}
        try:
            merge(self, shard_to_merge, adjacent_shard_to_merge)
        finally:
            for parent, records in zip(parents, kept, strict=True):
                parent.records = records

    shard_for_key.cardstream_patched = True  # type: ignore[attr-defined]
    # Replacing moto's methods is the point of this module.
    models.Stream.get_shard_for_key = shard_for_key  # type: ignore[method-assign]
    models.Stream.split_shard = split_shard  # type: ignore[method-assign]
    models.Stream.merge_shards = merge_shards  # type: ignore[method-assign]
