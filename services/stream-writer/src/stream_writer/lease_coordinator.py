"""Lease coordination: shard sync, taking and stealing, renewal, and one consumer per lease."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from stream_writer.balancer import ExpiryTracker, LeaseState, plan
from stream_writer.batcher import Batcher, Thresholds
from stream_writer.checkpoint import BatchCommitter
from stream_writer.lease import Lease, LeaseLostError, LeaseTable, OwnedLease
from stream_writer.metrics import WriterMetrics
from stream_writer.s3_sink import S3Sink
from stream_writer.settings import WriterSettings
from stream_writer.shard_consumer import ShardConsumer
from stream_writer.shard_discovery import ready, sync_leases
from stream_writer.shard_reader import ShardReader

log = logging.getLogger(__name__)


class LeaseCoordinator:
    """Keeps this worker's fair share of leases and a running consumer for each."""

    def __init__(
        self,
        *,
        settings: WriterSettings,
        table: LeaseTable,
        kinesis: Any,
        sink: S3Sink,
        metrics: WriterMetrics,
    ) -> None:
        self._settings = settings
        self._table = table
        self._kinesis = kinesis
        self._sink = sink
        self._metrics = metrics
        self._tracker = ExpiryTracker(settings.lease_expiry_s)
        self._held: dict[str, OwnedLease] = {}
        self._consumers: dict[str, asyncio.Task[str]] = {}
        self._stop_consumers = asyncio.Event()
        self._wake = asyncio.Event()
        self._stream_shards: set[str] = set()
        self._last_sync = float("-inf")
        self.last_scan_at: float | None = None

    @property
    def held_shards(self) -> list[str]:
        """Shards this worker holds, sorted."""
        return sorted(self._held)

    async def run(self, stop: asyncio.Event) -> None:
        """Take, renew and consume until ``stop``; then flush, checkpoint and release."""
        renewer = asyncio.create_task(self._renew_loop(stop))
        try:
            while not stop.is_set():
                try:
                    await self._take_once()
                except Exception:
                    log.exception("lease scan failed; retrying next interval")
                self._wake.clear()
                # Scan again after the take interval, or as soon as another worker's lease
                # expires if that is sooner, so a dead worker's shards move without delay.
                wait_s = self._settings.take_interval_s
                expiry = self._tracker.next_expiry(self._table.worker_id)
                if expiry is not None:
                    wait_s = min(wait_s, expiry - time.monotonic() + 0.01)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_first_of(stop, self._wake), wait_s)
        finally:
            # Consumers flush, checkpoint and release their own leases; the renewer keeps
            # the leases alive while they do.
            self._stop_consumers.set()
            if self._consumers:
                await asyncio.wait(
                    list(self._consumers.values()), timeout=self._settings.shutdown_timeout_s
                )
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _take_once(self) -> None:
        now = time.monotonic()
        if now - self._last_sync >= self._settings.shard_sync_interval_s:
            self._stream_shards = await sync_leases(
                self._kinesis,
                self._table,
                self._settings.stream_name,
                self._settings.initial_position,
            )
            self._last_sync = now
        leases = await self._table.list_leases()
        self.last_scan_at = time.monotonic()
        by_shard = {lease.shard_id: lease for lease in leases}
        me = self._table.worker_id
        # A lease the table gives us but no consumer runs for (its release failed) is ours
        # to take again, like an unowned one.
        states = [
            LeaseState(
                lease.shard_id,
                None if lease.owner == me and lease.shard_id not in self._held else lease.owner,
                lease.counter,
            )
            for lease in leases
        ]
        expired = self._tracker.observe(states)
        workable = [
            state
            for state in states
            if state.shard_id in self._held
            or ready(by_shard[state.shard_id], by_shard, self._stream_shards)
        ]
        decision = plan(workable, expired, me)
        for shard_id in decision.take:
            await self._acquire(by_shard[shard_id], stolen=False)
        for shard_id in decision.steal:
            await self._acquire(by_shard[shard_id], stolen=True)

    async def _acquire(self, lease: Lease, *, stolen: bool) -> None:
        sent_at = time.monotonic()
        taken = await self._table.take(lease)
        if taken is None:
            return
        (self._metrics.lease_steals if stolen else self._metrics.lease_takes).inc()
        log.info(
            "lease stolen" if stolen else "lease taken",
            extra={"shard_id": lease.shard_id, "previous_owner": lease.owner},
        )
        owned = OwnedLease(self._table, taken, sent_at)
        self._held[lease.shard_id] = owned
        self._metrics.leases_held.set(len(self._held))
        task = asyncio.create_task(self._consume(owned), name=f"shard-{lease.shard_id}")
        self._consumers[lease.shard_id] = task

    def _new_consumer(self, owned: OwnedLease) -> ShardConsumer:
        s = self._settings
        reader = ShardReader(
            self._kinesis,
            stream_name=s.stream_name,
            shard_id=owned.shard_id,
            limit=s.get_records_limit,
            min_interval_s=s.min_read_interval_s,
            backoff_max_s=s.throttle_backoff_max_s,
            initial_timestamp=s.initial_timestamp,
            metrics=self._metrics,
        )
        batcher = Batcher(Thresholds(s.flush_max_bytes, s.flush_max_records, s.flush_max_age_s))
        committer = BatchCommitter(
            owned,
            self._sink,
            worker_id=s.worker_id,
            lease_expiry_s=s.lease_expiry_s,
            gzip_level=s.gzip_level,
            metrics=self._metrics,
        )
        return ShardConsumer(
            owned,
            reader,
            batcher,
            committer,
            poll_interval_s=s.poll_interval_s,
            metrics=self._metrics,
        )

    async def _consume(self, owned: OwnedLease) -> str:
        outcome = "failed"
        try:
            outcome = await self._new_consumer(owned).run(self._stop_consumers)
        except Exception:
            # The lease stays ours until it expires; releasing it lets another worker (or
            # this one, on the next scan) start again from the checkpoint at once.
            log.exception("shard consumer failed", extra={"shard_id": owned.shard_id})
            with contextlib.suppress(Exception):
                await owned.release()
        finally:
            self._held.pop(owned.shard_id, None)
            self._consumers.pop(owned.shard_id, None)
            self._metrics.leases_held.set(len(self._held))
        if outcome == "shard_end":
            # Children become ready now; look for them (and sync shards) without waiting.
            self._last_sync = float("-inf")
            self._wake.set()
        return outcome

    async def _renew_loop(self, stop: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self._settings.renew_interval_s)
            for owned in list(self._held.values()):
                if owned.lost:
                    continue
                try:
                    await owned.renew()
                except LeaseLostError:
                    log.warning("lease lost at renewal", extra={"shard_id": owned.shard_id})
                except Exception:
                    log.exception("lease renewal failed", extra={"shard_id": owned.shard_id})


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
