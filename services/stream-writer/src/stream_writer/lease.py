"""The DynamoDB lease table: one item per shard, every write conditional on ``leaseCounter``.

Attribute names follow the Kinesis Client Library (``leaseKey``, ``leaseOwner``,
``leaseCounter``, ``checkpoint``, ``pendingCheckpoint``, ``ownerSwitchesSinceCheckpoint``,
``parentShardId``) so an operator who knows KCL can read the table. The counter is the fence:
every write by the owner requires the counter it last saw and moves it on, so a worker that
was paused or partitioned while another took the lease finds its next write refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Final

from botocore.exceptions import ClientError

TRIM_HORIZON: Final = "TRIM_HORIZON"
LATEST: Final = "LATEST"
AT_TIMESTAMP: Final = "AT_TIMESTAMP"
SHARD_END: Final = "SHARD_END"
SENTINELS: Final = frozenset({TRIM_HORIZON, LATEST, AT_TIMESTAMP, SHARD_END})


class LeaseLostError(Exception):
    """A conditional write was refused: another worker holds the lease now."""

    def __init__(self, shard_id: str) -> None:
        self.shard_id = shard_id
        super().__init__(f"lease for {shard_id} is no longer ours")


@dataclass(frozen=True)
class PendingObject:
    """The object a worker was about to write when it last wrote the lease (two-phase checkpoint).

    A new owner finds it after a crash between the S3 put and the checkpoint: if the object
    exists the checkpoint moves to ``last_sequence``; otherwise the same records are written
    again under the same keys, which the conditional put makes safe.
    """

    last_sequence: str
    raw_key: str | None
    quarantine_key: str | None


@dataclass(frozen=True)
class Lease:
    """One row of the lease table as last read or written by this worker."""

    shard_id: str
    owner: str | None
    counter: int
    checkpoint: str
    parent_shard_ids: tuple[str, ...] = ()
    owner_switches: int = 0
    pending: PendingObject | None = None

    @property
    def finished(self) -> bool:
        """The shard was read to its end and everything in it is written."""
        return self.checkpoint == SHARD_END


def _item_to_lease(item: dict[str, Any]) -> Lease:
    pending = None
    if "pendingCheckpoint" in item:
        pending = PendingObject(
            last_sequence=item["pendingCheckpoint"]["S"],
            raw_key=item.get("pendingRawKey", {}).get("S"),
            quarantine_key=item.get("pendingQuarantineKey", {}).get("S"),
        )
    return Lease(
        shard_id=item["leaseKey"]["S"],
        owner=item.get("leaseOwner", {}).get("S"),
        counter=int(item["leaseCounter"]["N"]),
        checkpoint=item["checkpoint"]["S"],
        parent_shard_ids=tuple(sorted(item.get("parentShardId", {}).get("SS", []))),
        owner_switches=int(item.get("ownerSwitchesSinceCheckpoint", {}).get("N", "0")),
        pending=pending,
    )


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


_FENCE: Final = "leaseCounter = :expected AND leaseOwner = :me"


class LeaseTable:
    """Reads and conditional writes on the lease table through an aiobotocore client."""

    def __init__(self, dynamodb: Any, table: str, worker_id: str) -> None:
        self._db = dynamodb
        self._table = table
        self.worker_id = worker_id

    async def list_leases(self) -> list[Lease]:
        """Every lease, read consistently (a stale read would hide a fresh take)."""
        leases: list[Lease] = []
        kwargs: dict[str, Any] = {"TableName": self._table, "ConsistentRead": True}
        while True:
            page = await self._db.scan(**kwargs)
            leases.extend(_item_to_lease(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return leases
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def create(self, shard_id: str, checkpoint: str, parents: tuple[str, ...]) -> bool:
        """Create an unowned lease; False when it exists already (another worker made it)."""
        item: dict[str, Any] = {
            "leaseKey": {"S": shard_id},
            "leaseCounter": {"N": "0"},
            "checkpoint": {"S": checkpoint},
            "checkpointSubSequenceNumber": {"N": "0"},
            "ownerSwitchesSinceCheckpoint": {"N": "0"},
        }
        if parents:
            item["parentShardId"] = {"SS": list(parents)}
        try:
            await self._db.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(leaseKey)",
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    async def take(self, lease: Lease) -> Lease | None:
        """Become the owner of ``lease`` as last seen (take or steal); None if it moved on."""
        switches = lease.owner_switches + (0 if lease.owner == self.worker_id else 1)
        try:
            await self._db.update_item(
                TableName=self._table,
                Key={"leaseKey": {"S": lease.shard_id}},
                UpdateExpression=(
                    "SET leaseOwner = :me, leaseCounter = :next, "
                    "ownerSwitchesSinceCheckpoint = :switches"
                ),
                ConditionExpression="leaseCounter = :expected",
                ExpressionAttributeValues={
                    ":me": {"S": self.worker_id},
                    ":next": {"N": str(lease.counter + 1)},
                    ":expected": {"N": str(lease.counter)},
                    ":switches": {"N": str(switches)},
                },
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                return None
            raise
        return replace(
            lease, owner=self.worker_id, counter=lease.counter + 1, owner_switches=switches
        )

    async def _fenced_update(
        self, lease: Lease, update: str, values: dict[str, Any] | None = None
    ) -> Lease:
        try:
            await self._db.update_item(
                TableName=self._table,
                Key={"leaseKey": {"S": lease.shard_id}},
                UpdateExpression=update,
                ConditionExpression=_FENCE,
                ExpressionAttributeValues={
                    ":me": {"S": self.worker_id},
                    ":expected": {"N": str(lease.counter)},
                    ":next": {"N": str(lease.counter + 1)},
                    **(values or {}),
                },
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                raise LeaseLostError(lease.shard_id) from None
            raise
        return replace(lease, counter=lease.counter + 1)

    async def renew(self, lease: Lease) -> Lease:
        """Move the counter on so other workers see the lease alive."""
        return await self._fenced_update(lease, "SET leaseCounter = :next")

    async def record_pending(self, lease: Lease, pending: PendingObject) -> Lease:
        """Announce the object about to be written; fences the put itself."""
        values: dict[str, Any] = {":pending": {"S": pending.last_sequence}}
        sets = ["leaseCounter = :next", "pendingCheckpoint = :pending"]
        removes = []
        for attribute, key in (
            ("pendingRawKey", pending.raw_key),
            ("pendingQuarantineKey", pending.quarantine_key),
        ):
            if key is None:
                removes.append(attribute)
            else:
                values[f":{attribute}"] = {"S": key}
                sets.append(f"{attribute} = :{attribute}")
        update = "SET " + ", ".join(sets)
        if removes:
            update += " REMOVE " + ", ".join(removes)
        updated = await self._fenced_update(lease, update, values)
        return replace(updated, pending=pending)

    async def checkpoint(self, lease: Lease, sequence: str, *, release: bool = False) -> Lease:
        """Record ``sequence`` (or SHARD_END) as written and clear the pending object."""
        update = (
            "SET checkpoint = :checkpoint, leaseCounter = :next, "
            "ownerSwitchesSinceCheckpoint = :zero "
            "REMOVE pendingCheckpoint, pendingRawKey, pendingQuarantineKey"
        )
        if release:
            update += ", leaseOwner"
        updated = await self._fenced_update(
            lease, update, {":checkpoint": {"S": sequence}, ":zero": {"N": "0"}}
        )
        return replace(
            updated,
            checkpoint=sequence,
            owner_switches=0,
            pending=None,
            owner=None if release else updated.owner,
        )

    async def release(self, lease: Lease) -> None:
        """Give the lease up so another worker can take it at once (no failover wait)."""
        await self._fenced_update(lease, "SET leaseCounter = :next REMOVE leaseOwner")


class OwnedLease:
    """A lease this worker holds: its writes are serialized and its freshness is tracked.

    The renewer and the shard's checkpointer both write the lease; one lock keeps their
    counters in step. Freshness is the local time of the last successful write, counted from
    when it was sent, which keeps the estimate on the safe side.
    """

    def __init__(self, table: LeaseTable, lease: Lease, sent_at: float) -> None:
        self._table = table
        self._lock = asyncio.Lock()
        self.lease = lease
        self.renewed_at = sent_at
        self.lost = False

    @property
    def shard_id(self) -> str:
        """The shard this lease covers."""
        return self.lease.shard_id

    def valid(self, expiry_s: float) -> bool:
        """Whether no other worker can have taken it yet, judged by our own clock.

        After a pause (SIGSTOP, a long GC, a partition) the gap since the last write exceeds
        the lease expiry time and the lease must be proven ours again before any output.
        """
        return not self.lost and time.monotonic() - self.renewed_at < expiry_s

    async def _write(self, operation: Callable[[Lease], Awaitable[Lease]]) -> Lease:
        async with self._lock:
            if self.lost:
                raise LeaseLostError(self.shard_id)
            sent_at = time.monotonic()
            try:
                self.lease = await operation(self.lease)
            except LeaseLostError:
                self.lost = True
                raise
            self.renewed_at = sent_at
            return self.lease

    async def renew(self) -> Lease:
        """Renew (fenced)."""
        return await self._write(self._table.renew)

    async def record_pending(self, pending: PendingObject) -> Lease:
        """Announce the object about to be written (fenced)."""
        return await self._write(lambda lease: self._table.record_pending(lease, pending))

    async def checkpoint(self, sequence: str, *, release: bool = False) -> Lease:
        """Move the checkpoint (fenced); with ``release`` also give the lease up."""
        lease = await self._write(
            lambda lease: self._table.checkpoint(lease, sequence, release=release)
        )
        if release:
            self.lost = True
        return lease

    async def release(self) -> None:
        """Give the lease up (fenced); afterwards no write is attempted."""

        async def operation(lease: Lease) -> Lease:
            await self._table.release(lease)
            return lease

        await self._write(operation)
        self.lost = True
