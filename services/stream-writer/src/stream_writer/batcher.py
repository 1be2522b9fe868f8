"""Per-shard buffer of decoded records, flushed by size, count or age.

The trigger that closes each batch is kept with it (object metadata and the
``cardstream_writer_flushes_total{trigger}`` metric).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Literal

from stream_writer.records import Quarantined

Trigger = Literal["bytes", "records", "age", "shard_end", "shutdown", "recovery"]


@dataclass
class Batch:
    """Records of one shard between two checkpoints, in stream order."""

    lines: list[bytes] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    payload_bytes: int = 0
    first_sequence: str | None = None
    last_sequence: str | None = None
    first_good_sequence: str | None = None
    last_good_sequence: str | None = None
    first_bad_sequence: str | None = None
    last_bad_sequence: str | None = None
    # Wall-clock arrival of the oldest record (Kinesis ApproximateArrivalTimestamp) and the
    # monotonic time it was buffered: the age trigger runs from the earlier of the two.
    oldest_arrival: dt.datetime | None = None
    buffered_at: float | None = None

    @property
    def empty(self) -> bool:
        """No record at all (neither good nor quarantined)."""
        return self.last_sequence is None

    @property
    def record_count(self) -> int:
        """Good records in the batch."""
        return len(self.lines)


@dataclass(frozen=True)
class Thresholds:
    """Flush limits of a batch."""

    max_bytes: int
    max_records: int
    max_age_s: float


class Batcher:
    """Collects a shard's records and says when the current batch must be flushed."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self.batch = Batch()

    def _would_overflow(self, line: bytes) -> bool:
        # +1 for the newline; a single oversized record still makes a batch of its own.
        return (
            self.batch.record_count > 0
            and self.batch.payload_bytes + len(line) + 1 > self.thresholds.max_bytes
        )

    def add(
        self,
        item: bytes | Quarantined,
        sequence_number: str,
        arrived_at: dt.datetime,
        now: float | None = None,
    ) -> None:
        """Buffer one record, whatever the thresholds say (used while rebuilding a batch)."""
        batch = self.batch
        if batch.first_sequence is None:
            batch.first_sequence = sequence_number
            batch.buffered_at = time.monotonic() if now is None else now
        batch.last_sequence = sequence_number
        if batch.oldest_arrival is None or arrived_at < batch.oldest_arrival:
            batch.oldest_arrival = arrived_at
        if isinstance(item, Quarantined):
            batch.quarantined.append(item)
            if batch.first_bad_sequence is None:
                batch.first_bad_sequence = sequence_number
            batch.last_bad_sequence = sequence_number
            return
        batch.lines.append(item)
        batch.payload_bytes += len(item) + 1
        if batch.first_good_sequence is None:
            batch.first_good_sequence = sequence_number
        batch.last_good_sequence = sequence_number

    def offer(
        self,
        item: bytes | Quarantined,
        sequence_number: str,
        arrived_at: dt.datetime,
        now: float | None = None,
    ) -> list[tuple[Batch, Trigger]]:
        """Buffer one record; return the batches it closed, with their triggers, in order.

        A record that would push the batch past the byte limit closes the batch first, so
        no object exceeds the limit unless one record alone does.
        """
        closed: list[tuple[Batch, Trigger]] = []
        if isinstance(item, bytes) and self._would_overflow(item):
            closed.append((self.take(), "bytes"))
        self.add(item, sequence_number, arrived_at, now)
        if self.batch.payload_bytes >= self.thresholds.max_bytes:
            closed.append((self.take(), "bytes"))
        elif self.batch.record_count >= self.thresholds.max_records:
            closed.append((self.take(), "records"))
        return closed

    def deadline(
        self, now: float | None = None, now_wall: dt.datetime | None = None
    ) -> float | None:
        """Monotonic time at which the age trigger fires, None for an empty batch."""
        batch = self.batch
        if batch.buffered_at is None:
            return None
        deadline = batch.buffered_at + self.thresholds.max_age_s
        if batch.oldest_arrival is not None:
            now_wall = now_wall or dt.datetime.now(dt.UTC)
            since_arrival = (now_wall - batch.oldest_arrival).total_seconds()
            # Clocks of Kinesis and this host differ a little; never wait longer than the
            # local buffering time allows, and never wait for a negative age.
            now = time.monotonic() if now is None else now
            arrival_deadline = now + max(self.thresholds.max_age_s - since_arrival, 0)
            deadline = min(deadline, arrival_deadline)
        return deadline

    def take(self) -> Batch:
        """Hand over the current batch and start a new one."""
        batch, self.batch = self.batch, Batch()
        return batch
