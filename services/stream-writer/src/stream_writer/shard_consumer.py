"""One owned shard: read, batch, commit, until SHARD_END, shutdown or loss of the lease."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from typing import Any, Literal

from stream_writer.batcher import Batch, Batcher, Trigger
from stream_writer.checkpoint import BatchCommitter
from stream_writer.lease import SHARD_END, LeaseLostError, OwnedLease, PendingObject
from stream_writer.metrics import WriterMetrics
from stream_writer.records import decode
from stream_writer.shard_reader import ShardReader

log = logging.getLogger(__name__)

Outcome = Literal["shard_end", "stopped", "lost"]


class ShardConsumer:
    """Runs the read -> batch -> commit loop of one shard; records are handled in order."""

    def __init__(
        self,
        owned: OwnedLease,
        reader: ShardReader,
        batcher: Batcher,
        committer: BatchCommitter,
        *,
        poll_interval_s: float,
        metrics: WriterMetrics,
    ) -> None:
        self.owned = owned
        self._reader = reader
        self._batcher = batcher
        self._committer = committer
        self._poll_interval_s = poll_interval_s
        self._metrics = metrics
        # Set while the batch announced by a crashed owner is being rebuilt: other triggers
        # wait until its last record is in, so the rebuilt objects get the announced keys.
        self._recovering: PendingObject | None = None
        self._lag_set = False
        # Smoothed durations of a GetRecords call and of a commit (announce + put): the age
        # trigger fires this much early, so the object is in S3 when the oldest record's
        # age is reached rather than a round trip or two later.
        self._read_s = 0.0
        self._commit_s = 0.0

    @property
    def shard_id(self) -> str:
        """The shard this consumer reads."""
        return self.owned.shard_id

    async def run(self, stop: asyncio.Event) -> Outcome:
        """Consume until the shard ends, ``stop`` is set, or the lease is lost."""
        try:
            return await self._run(stop)
        except LeaseLostError:
            # Another worker owns the shard now and restarts from the checkpoint; what we
            # buffered is dropped, never written.
            self._batcher.take()
            self._metrics.leases_lost.inc()
            log.warning("lease lost; shard dropped", extra={"shard_id": self.shard_id})
            return "lost"
        finally:
            if self._lag_set:
                self._metrics.millis_behind_latest.remove(self.shard_id)

    async def _flush(self, trigger: Trigger, keys: PendingObject | None = None) -> None:
        await self._commit(self._batcher.take(), trigger, keys)

    async def _commit(self, batch: Batch, trigger: Trigger, keys: PendingObject | None) -> None:
        started = time.monotonic()
        await self._committer.commit(batch, trigger, keys)
        self._commit_s = _smooth(self._commit_s, time.monotonic() - started)

    def _age_deadline(self) -> float | None:
        deadline = self._batcher.deadline()
        if deadline is None:
            return None
        # Never more than half the age early: a slow S3 must not shrink batches to nothing.
        lead = min(self._read_s + self._commit_s, self._batcher.thresholds.max_age_s / 2)
        return deadline - lead

    async def _run(self, stop: asyncio.Event) -> Outcome:
        lease = self.owned.lease
        if lease.pending is not None and not await self._committer.resolve_pending(lease.pending):
            self._recovering = lease.pending
        self._reader.start_at(self.owned.lease.checkpoint)
        next_read = 0.0
        while not stop.is_set() and not self.owned.lost:
            # The age trigger is checked before reading, so a due batch never waits for a
            # GetRecords round trip.
            deadline = self._age_deadline()
            if deadline is not None and self._recovering is None and time.monotonic() >= deadline:
                await self._flush("age")
                continue
            if time.monotonic() >= next_read:
                started = time.monotonic()
                result = await self._reader.read()
                self._read_s = _smooth(self._read_s, time.monotonic() - started)
                if result.millis_behind_latest is not None:
                    self._metrics.millis_behind_latest.labels(self.shard_id).set(
                        result.millis_behind_latest
                    )
                    self._lag_set = True
                if result.records:
                    await self._ingest(result.records)
                if result.shard_end:
                    await self._finish_shard()
                    return "shard_end"
                caught_up = not result.records or not result.millis_behind_latest
                idle = self._poll_interval_s if caught_up else 0.0
                next_read = max(self._reader.next_call_at, time.monotonic() + idle)
                continue
            wake = next_read if deadline is None else min(next_read, deadline)
            delay = wake - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        if self.owned.lost:
            raise LeaseLostError(self.shard_id)
        await self._shutdown()
        return "stopped"

    async def _ingest(self, records: list[dict[str, Any]]) -> None:
        # The per-record path: about half of the writer's CPU budget a record (figures in
        # docs/benchmarks.md).
        self._metrics.records_in.inc(len(records))
        batcher = self._batcher
        for record in records:
            sequence: str = record["SequenceNumber"]
            arrived: dt.datetime = record["ApproximateArrivalTimestamp"]
            item = decode(record["Data"], sequence, record["PartitionKey"], arrived)
            if self._recovering is None:
                for batch, trigger in batcher.offer(item, sequence, arrived):
                    await self._commit(batch, trigger, None)
                continue
            batcher.add(item, sequence, arrived)
            if int(sequence) >= int(self._recovering.last_sequence):
                pending, self._recovering = self._recovering, None
                keys = pending if sequence == pending.last_sequence else None
                await self._flush("recovery", keys)

    async def _finish_shard(self) -> None:
        # Everything in the shard is read: write the rest, then mark the lease SHARD_END and
        # let it go, which makes the children ready for whichever worker takes them.
        self._recovering = None
        await self._flush("shard_end")
        await self.owned.checkpoint(SHARD_END, release=True)
        log.info("shard reached SHARD_END", extra={"shard_id": self.shard_id})

    async def _shutdown(self) -> None:
        if self._recovering is None:
            await self._flush("shutdown")
        else:
            # The announced batch is incomplete; the next owner rebuilds it from the stream.
            self._batcher.take()
        await self.owned.release()
        log.info("lease released", extra={"shard_id": self.shard_id})


def _smooth(previous: float, sample: float) -> float:
    """Exponentially weighted moving average (weight 0.2 on the new sample)."""
    return sample if previous == 0.0 else 0.8 * previous + 0.2 * sample
