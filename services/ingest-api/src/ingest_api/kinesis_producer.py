"""Kinesis producer: PutRecords with per-record retries inside a deadline, and coalescing.

``PutRecords`` answers HTTP 200 even when some entries failed (``FailedRecordCount``, with
``ProvisionedThroughputExceededException`` or ``InternalFailure`` per entry), and botocore's
retry modes never look inside a 200. So this module resends only the failed entries, with
full-jitter exponential backoff, until every entry has a sequence number or the deadline
passes. A record counts as accepted only once Kinesis gave it a sequence number; everything
else is reported as not accepted and the caller must not claim it was stored.

Single-record requests are coalesced: each waits at most ``coalesce_window_s`` for others
so that concurrent requests share one PutRecords call instead of paying one each. While
``coalesce_max_in_flight`` coalesced calls are already waiting for Kinesis, records keep
gathering until one returns, so a slow stream gets fewer, larger calls.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from typing import Any, Final

import msgspec
from botocore.exceptions import BotoCoreError, ClientError

from ingest_api.metrics import IngestMetrics
from ingest_api.settings import KINESIS_MAX_BYTES_PER_CALL, KINESIS_MAX_RECORDS_PER_CALL

logger = logging.getLogger(__name__)

# Error codes after which the same call may succeed (AWS Kinesis API reference, "Errors").
_RETRYABLE_CODES: Final = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "InternalFailure",
        "InternalFailureException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ThrottlingException",
        "LimitExceededException",
        "KMSThrottlingException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


# msgspec structs rather than dataclasses: a batch makes one of each per record, and a frozen
# dataclass's __init__ (object.__setattr__ per field) cost several times as much. Holding
# only strings and bytes, they cannot be part of a reference cycle: gc=False keeps them out
# of the garbage collector's lists.
class Receipt(msgspec.Struct, frozen=True, gc=False):
    """Proof that Kinesis stored a record."""

    shard_id: str
    sequence_number: str


class OutgoingRecord(msgspec.Struct, frozen=True, gc=False):
    """One stream record: the serialized envelope and its partition key (the card token)."""

    data: bytes
    partition_key: str

    @property
    def size(self) -> int:
        # Kinesis counts the partition key towards the record and request size limits.
        return len(self.data) + len(self.partition_key.encode())


# Kinesis partition keys are at most 256 characters, so at most 1 KiB in UTF-8.
_MAX_PARTITION_KEY_BYTES: Final = 256 * 4


def chunk_records(
    records: Sequence[OutgoingRecord],
    *,
    max_records: int = KINESIS_MAX_RECORDS_PER_CALL,
    max_bytes: int = KINESIS_MAX_BYTES_PER_CALL,
) -> list[list[int]]:
    """Indexes of ``records`` grouped into PutRecords calls within both limits, in order."""
    if (
        0 < len(records) <= max_records
        and sum(len(record.data) for record in records) + _MAX_PARTITION_KEY_BYTES * len(records)
        <= max_bytes
    ):
        # The common case (a batch of up to 500 records of a few hundred bytes) fits in one
        # call whatever its keys are: no need to measure each key.
        return [list(range(len(records)))]
    chunks: list[list[int]] = []
    current: list[int] = []
    size = 0
    for index, record in enumerate(records):
        record_size = record.size
        if current and (len(current) >= max_records or size + record_size > max_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(index)
        size += record_size
    if current:
        chunks.append(current)
    return chunks


def backoff_delay(attempt: int, *, base_s: float, max_s: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff (AWS Architecture Blog, "Exponential Backoff And
    Jitter"): uniform in [0, min(max, base * 2**attempt)]."""
    return rng.uniform(0.0, min(max_s, base_s * (2**attempt)))


class KinesisProducer:
    """Writes records to one stream; see the module docstring for the guarantees."""

    def __init__(
        self,
        client: Any,
        stream_name: str,
        *,
        metrics: IngestMetrics,
        deadline_s: float,
        backoff_base_s: float,
        backoff_max_s: float,
        attempt_timeout_s: float,
        coalesce_window_s: float,
        coalesce_max_records: int,
        coalesce_max_in_flight: int = 2,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._stream_name = stream_name
        self._metrics = metrics
        self._deadline_s = deadline_s
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._attempt_timeout_s = attempt_timeout_s
        self._coalesce_window_s = coalesce_window_s
        self._coalesce_max_records = coalesce_max_records
        self._coalesce_max_in_flight = coalesce_max_in_flight
        self._rng = rng or random.Random()
        self._pending: list[tuple[OutgoingRecord, asyncio.Future[Receipt | None]]] = []
        self._pending_bytes = 0
        self._pending_since = 0.0
        self._flush_timer: asyncio.TimerHandle | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._flush_when_free = False
        self._closed = False

    async def put_records(
        self, records: Sequence[OutgoingRecord], *, deadline: float | None = None
    ) -> list[Receipt | None]:
        """Store ``records``; one receipt per record, None for those not accepted in time.

        ``deadline`` is a ``time.monotonic()`` instant; by default now + the configured
        deadline. Chunks are sent concurrently; each record keeps its position.
        """
        if deadline is None:
            deadline = time.monotonic() + self._deadline_s
        results: list[Receipt | None] = [None] * len(records)
        chunks = chunk_records(records)
        if len(chunks) == 1:
            await self._put_chunk(records, chunks[0], results, deadline)
        else:
            await asyncio.gather(
                *(self._put_chunk(records, chunk, results, deadline) for chunk in chunks)
            )
        return results

    async def put_record(self, record: OutgoingRecord) -> Receipt | None:
        """Store one record, sharing a PutRecords call with concurrent callers."""
        if self._closed:
            raise RuntimeError("producer is closed")
        if self._coalesce_window_s <= 0:
            return (await self.put_records([record]))[0]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Receipt | None] = loop.create_future()
        if self._pending and self._pending_bytes + record.size > KINESIS_MAX_BYTES_PER_CALL:
            self._flush_pending(force=True)
        if not self._pending:
            self._pending_since = time.monotonic()
            self._flush_timer = loop.call_later(self._coalesce_window_s, self._flush_pending)
        self._pending.append((record, future))
        self._pending_bytes += record.size
        if len(self._pending) >= self._coalesce_max_records:
            self._flush_pending(force=True)
        return await future

    def _flush_pending(self, *, force: bool = False) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if not self._pending:
            return
        if not force and len(self._in_flight) >= self._coalesce_max_in_flight:
            # Kinesis is slower than the window: keep gathering until a call returns, so
            # that the call rate follows what the stream absorbs and each call carries
            # more records (Nagle's algorithm, RFC 896, applied to PutRecords).
            self._flush_when_free = True
            return
        self._flush_when_free = False
        group, self._pending, self._pending_bytes = self._pending, [], 0
        # The deadline runs from the moment the first record of the group arrived.
        deadline = self._pending_since + self._deadline_s
        self._metrics.coalesced_group_size.observe(len(group))
        task = asyncio.get_running_loop().create_task(self._send_group(group, deadline))
        self._in_flight.add(task)
        task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._flush_when_free:
            self._flush_pending()

    async def _send_group(
        self, group: list[tuple[OutgoingRecord, asyncio.Future[Receipt | None]]], deadline: float
    ) -> None:
        try:
            receipts = await self.put_records([record for record, _ in group], deadline=deadline)
        except BaseException:
            for _, future in group:
                if not future.done():
                    future.set_result(None)
            raise
        for (_, future), receipt in zip(group, receipts, strict=True):
            if not future.done():
                future.set_result(receipt)

    async def close(self) -> None:
        """Send what is waiting to be coalesced and wait for every call in flight."""
        self._closed = True
        self._flush_pending(force=True)
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _put_chunk(
        self,
        records: Sequence[OutgoingRecord],
        indexes: list[int],
        results: list[Receipt | None],
        deadline: float,
    ) -> None:
        pending = indexes
        attempt = 0
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            entries = [
                {"Data": records[i].data, "PartitionKey": records[i].partition_key} for i in pending
            ]
            started = time.perf_counter()
            try:
                async with asyncio.timeout(min(remaining, self._attempt_timeout_s)):
                    response = await self._client.put_records(
                        StreamName=self._stream_name, Records=entries
                    )
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
                self._metrics.kinesis_calls.labels(outcome=code).inc()
                if code not in _RETRYABLE_CODES:
                    logger.error(  # noqa: TRY400 - the error code says it all; no trace
                        "PutRecords refused, not retrying",
                        extra={"error_code": code, "records": len(pending)},
                    )
                    return
                failed = pending
                reason = code
            except (TimeoutError, BotoCoreError, OSError) as exc:
                # The call may have stored the records before the answer was lost; resending
                # makes a duplicate in the stream, which the loader's upsert on trans_num
                # turns into one row (docs/reliability.md, F2).
                reason = type(exc).__name__
                self._metrics.kinesis_calls.labels(outcome=reason).inc()
                failed = pending
            else:
                self._metrics.kinesis_latency.observe(time.perf_counter() - started)
                failed = []
                reason = ""
                for index, entry in zip(pending, response["Records"], strict=True):
                    sequence = entry.get("SequenceNumber")
                    if sequence:
                        # Strings, as the answer's shape says (kinesis_codec reads it).
                        results[index] = Receipt(entry["ShardId"], sequence)
                    else:
                        failed.append(index)
                        reason = str(entry.get("ErrorCode") or "Unknown")
                self._metrics.kinesis_calls.labels(outcome="partial" if failed else "ok").inc()
            if not failed:
                return
            self._metrics.kinesis_retried_records.labels(reason=reason).inc(len(failed))
            pending = failed
            delay = backoff_delay(
                attempt, base_s=self._backoff_base_s, max_s=self._backoff_max_s, rng=self._rng
            )
            attempt += 1
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        if pending:
            logger.warning(
                "records not accepted by Kinesis before the deadline",
                extra={"records": len(pending), "attempts": attempt},
            )
