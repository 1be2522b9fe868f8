"""Shard discovery: ListShards, one lease per shard, and the parent-before-child rule.

After a split or merge, a child's records continue its parents' partition keys, so a child
is read only once each parent's lease is checkpointed at SHARD_END; per-card order then holds
across the reshard. Children always start at TRIM_HORIZON so nothing between the parents'
end and the child's start is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stream_writer.lease import LATEST, SHARD_END, TRIM_HORIZON, Lease, LeaseTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardInfo:
    """What ListShards says about a shard."""

    shard_id: str
    parents: tuple[str, ...]
    closed: bool


def parse_shards(shards: Iterable[Mapping[str, Any]]) -> list[ShardInfo]:
    """ShardInfo from ListShards entries (ParentShardId and AdjacentParentShardId)."""
    result = []
    for shard in shards:
        parents = tuple(
            sorted(
                shard[name] for name in ("ParentShardId", "AdjacentParentShardId") if name in shard
            )
        )
        closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
        result.append(ShardInfo(shard["ShardId"], parents, closed))
    return result


async def list_shards(kinesis: Any, stream_name: str) -> list[ShardInfo]:
    """Every shard of the stream (paginated ListShards)."""
    shards: list[Mapping[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamName": stream_name}
    while True:
        page = await kinesis.list_shards(**kwargs)
        shards.extend(page.get("Shards", []))
        token = page.get("NextToken")
        if not token:
            return parse_shards(shards)
        kwargs = {"NextToken": token}


def initial_checkpoints(
    shards: list[ShardInfo], known: set[str], initial_position: str, first_run: bool
) -> dict[str, str]:
    """Starting checkpoint of each shard in ``shards`` that has no lease yet (``known``).

    A shard whose parent is in the stream (or has a lease) is a child: TRIM_HORIZON.
    On the very first run with LATEST, closed shards hold only the past and are marked
    SHARD_END, so their open children start at LATEST rather than replaying history.
    """
    present = {shard.shard_id for shard in shards} | known
    checkpoints: dict[str, str] = {}
    for shard in shards:
        if shard.shard_id in known:
            continue
        has_parent = any(parent in present for parent in shard.parents)
        if first_run and initial_position == LATEST:
            checkpoints[shard.shard_id] = SHARD_END if shard.closed else LATEST
        elif has_parent:
            checkpoints[shard.shard_id] = TRIM_HORIZON
        else:
            checkpoints[shard.shard_id] = initial_position
    return checkpoints


def ready(lease: Lease, by_shard: Mapping[str, Lease], stream_shards: set[str]) -> bool:
    """A lease can be worked on: not finished, and every parent finished or gone.

    A parent that has no lease and is no longer listed has aged out of the stream's
    retention, so nothing of it remains to be read first. A listed parent without a lease
    yet is waited for: its lease is about to be created.
    """
    if lease.finished:
        return False
    for parent in lease.parent_shard_ids:
        parent_lease = by_shard.get(parent)
        if parent_lease is None:
            if parent in stream_shards:
                return False
        elif not parent_lease.finished:
            return False
    return True


async def sync_leases(
    kinesis: Any, leases: LeaseTable, stream_name: str, initial_position: str
) -> set[str]:
    """Create a lease for every shard that lacks one; returns the ids of the listed shards."""
    shards = await list_shards(kinesis, stream_name)
    existing = await leases.list_leases()
    known = {lease.shard_id for lease in existing}
    checkpoints = initial_checkpoints(shards, known, initial_position, first_run=not existing)
    by_id = {shard.shard_id: shard for shard in shards}
    # Parents first, so a child never exists in the table without the parents it waits for.
    for shard_id in sorted(checkpoints, key=lambda s: (len(by_id[s].parents) > 0, s)):
        if await leases.create(shard_id, checkpoints[shard_id], by_id[shard_id].parents):
            log.info(
                "lease created",
                extra={"shard_id": shard_id, "checkpoint": checkpoints[shard_id]},
            )
    return set(by_id)
