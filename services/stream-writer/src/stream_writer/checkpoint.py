"""Committing a batch: announce it in the lease, write it to S3, then move the checkpoint.

The order is what makes the hop at-least-once without gaps, and exactly-once in the common
crash case:

1. ``pendingCheckpoint`` and the object keys are written to the lease, conditional on the
   lease counter. A worker that lost its lease (a paused zombie) is refused here, before it
   can write anything.
2. The quarantine object (if any record was undecodable) and the raw object are put with
   If-None-Match; "already there" counts as written because the key fixes the records.
3. The checkpoint moves to the batch's last sequence number, again conditional on the
   counter. Only now is the batch forgotten.

A worker that takes the lease over after a crash between 2 and 3 finds the pending object:
if it exists, it only moves the checkpoint; otherwise it rebuilds the same batch from the
stream and writes it under the same keys.
"""

from __future__ import annotations

import datetime as dt
import logging

from stream_writer.batcher import Batch, Trigger
from stream_writer.lease import OwnedLease, PendingObject
from stream_writer.metrics import WriterMetrics
from stream_writer.records import Quarantined
from stream_writer.s3_sink import S3Sink, ndjson_gzip, quarantine_key, raw_key

log = logging.getLogger(__name__)


def _quarantine_body(items: list[Quarantined], level: int) -> bytes:
    return ndjson_gzip([item.to_json_line() for item in items], level)


class BatchCommitter:
    """Writes one shard's batches and checkpoints them, fenced by the shard's lease."""

    def __init__(
        self,
        owned: OwnedLease,
        sink: S3Sink,
        *,
        worker_id: str,
        lease_expiry_s: float,
        gzip_level: int,
        metrics: WriterMetrics,
    ) -> None:
        self._owned = owned
        self._sink = sink
        self._worker_id = worker_id
        self._lease_expiry_s = lease_expiry_s
        self._gzip_level = gzip_level
        self._metrics = metrics

    def keys_for(self, batch: Batch, flushed_at: dt.datetime) -> PendingObject:
        """Deterministic keys of the objects ``batch`` becomes."""
        assert batch.last_sequence is not None
        shard = self._owned.shard_id
        raw = None
        if batch.first_good_sequence is not None and batch.last_good_sequence is not None:
            raw = raw_key(shard, batch.first_good_sequence, batch.last_good_sequence, flushed_at)
        quarantine = None
        if batch.first_bad_sequence is not None and batch.last_bad_sequence is not None:
            quarantine = quarantine_key(
                shard, batch.first_bad_sequence, batch.last_bad_sequence, flushed_at
            )
        return PendingObject(batch.last_sequence, raw, quarantine)

    async def resolve_pending(self, pending: PendingObject) -> bool:
        """After a takeover: True (and checkpointed) if the pending objects were written."""
        key = pending.raw_key or pending.quarantine_key
        if key is not None and not await self._sink.exists(key):
            return False
        await self._owned.checkpoint(pending.last_sequence)
        log.info(
            "pending object found written; checkpoint moved",
            extra={"shard_id": self._owned.shard_id, "key": key},
        )
        return True

    async def commit(self, batch: Batch, trigger: Trigger, keys: PendingObject | None) -> None:
        """Write ``batch`` (under ``keys`` when rebuilding a pending object) and checkpoint."""
        if batch.empty:
            return
        if not self._owned.valid(self._lease_expiry_s):
            # Other workers may see the lease expired by now (were we paused?): prove
            # ownership first.
            await self._owned.renew()
        keys = keys or self.keys_for(batch, dt.datetime.now(dt.UTC))
        await self._owned.record_pending(keys)
        metadata = {
            "trigger": trigger,
            "writer-id": self._worker_id,
            "shard-id": self._owned.shard_id,
        }
        if keys.quarantine_key is not None:
            await self._put(
                keys.quarantine_key,
                _quarantine_body(batch.quarantined, self._gzip_level),
                {
                    **metadata,
                    "record-count": str(len(batch.quarantined)),
                    "first-sequence": str(batch.first_bad_sequence),
                    "last-sequence": str(batch.last_bad_sequence),
                },
            )
            self._metrics.records_out.labels("quarantine").inc(len(batch.quarantined))
        if keys.raw_key is not None:
            await self._put(
                keys.raw_key,
                ndjson_gzip(batch.lines, self._gzip_level),
                {
                    **metadata,
                    "record-count": str(batch.record_count),
                    "bytes": str(batch.payload_bytes),
                    "first-sequence": str(batch.first_good_sequence),
                    "last-sequence": str(batch.last_good_sequence),
                },
            )
            self._metrics.records_out.labels("raw").inc(batch.record_count)
        await self._owned.checkpoint(keys.last_sequence)
        self._metrics.flushes.labels(trigger).inc()

    async def _put(self, key: str, body: bytes, metadata: dict[str, str]) -> None:
        result = await self._sink.put(key, body, metadata)
        self._metrics.s3_put_seconds.observe(result.seconds)
        self._metrics.objects.labels("created" if result.created else "already_written").inc()
