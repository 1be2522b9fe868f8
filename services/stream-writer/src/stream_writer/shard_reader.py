"""GetRecords on one shard within the service limits.

Kinesis allows five GetRecords calls per second per shard, shared by every consumer of that
shard, and iterators expire after five minutes. The reader spaces its calls, backs off on
ProvisionedThroughputExceeded, and renews an expired iterator from the last position it
read (the checkpoint when nothing has been read since).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from binascii import a2b_base64
from dataclasses import dataclass
from typing import Any

import msgspec
from botocore.exceptions import ClientError

from cardstream_shared.aws import aio_client
from cardstream_shared.settings import ServiceSettings
from stream_writer.lease import AT_TIMESTAMP, LATEST, SENTINELS, TRIM_HORIZON
from stream_writer.metrics import WriterMetrics

log = logging.getLogger(__name__)


def read_get_records(raw_body: bytes, shape: Any) -> dict[str, Any]:
    """A GetRecords answer as botocore's parser reads it (``Data`` base64-decoded to bytes,
    ``ApproximateArrivalTimestamp`` from epoch seconds to an aware datetime), without its
    walk of the model and dateutil for each record's timestamp (figures in
    docs/benchmarks.md)."""
    body = msgspec.json.decode(raw_body)
    records = []
    for record in body.get("Records") or ():
        parsed = {
            "SequenceNumber": record["SequenceNumber"],
            "ApproximateArrivalTimestamp": dt.datetime.fromtimestamp(
                record["ApproximateArrivalTimestamp"], dt.UTC
            ),
            "Data": a2b_base64(record["Data"]),
            "PartitionKey": record["PartitionKey"],
        }
        if "EncryptionType" in record:
            parsed["EncryptionType"] = record["EncryptionType"]
        records.append(parsed)
    result: dict[str, Any] = {"Records": records}
    for key in ("NextShardIterator", "MillisBehindLatest", "ChildShards"):
        if body.get(key) is not None:
            result[key] = body[key]
    return result


def kinesis_client(settings: ServiceSettings) -> Any:
    """An aiobotocore Kinesis client (the shared endpoint, retry and timeout settings) that
    reads GetRecords answers with :func:`read_get_records`."""
    return aio_client("kinesis", settings, readers={"GetRecordsOutput": read_get_records})


@dataclass(frozen=True)
class ReadResult:
    """One GetRecords call's records, lag, and whether the shard has ended."""

    records: list[dict[str, Any]]
    millis_behind_latest: int | None
    shard_end: bool


class ShardReader:
    """Reads one shard from a checkpoint onwards."""

    def __init__(
        self,
        kinesis: Any,
        *,
        stream_name: str,
        shard_id: str,
        limit: int,
        min_interval_s: float,
        backoff_max_s: float,
        initial_timestamp: dt.datetime | None,
        metrics: WriterMetrics,
    ) -> None:
        self._kinesis = kinesis
        self._stream = stream_name
        self.shard_id = shard_id
        self._limit = limit
        self._min_interval_s = min_interval_s
        self._backoff_max_s = backoff_max_s
        self._initial_timestamp = initial_timestamp
        self._metrics = metrics
        self._iterator: str | None = None
        self._position = TRIM_HORIZON
        self._next_call = 0.0
        self._throttled_in_a_row = 0

    def start_at(self, checkpoint: str) -> None:
        """Read after ``checkpoint`` (a sequence number or a sentinel position)."""
        self._position = checkpoint
        self._iterator = None

    @property
    def next_call_at(self) -> float:
        """Monotonic time before which no GetRecords call is made."""
        return self._next_call

    async def _new_iterator(self) -> str:
        kwargs: dict[str, Any] = {"StreamName": self._stream, "ShardId": self.shard_id}
        if self._position not in SENTINELS:
            kwargs.update(
                ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=self._position
            )
        elif self._position == AT_TIMESTAMP:
            kwargs.update(ShardIteratorType=AT_TIMESTAMP, Timestamp=self._initial_timestamp)
        elif self._position == LATEST:
            kwargs.update(ShardIteratorType=LATEST)
        else:
            kwargs.update(ShardIteratorType=TRIM_HORIZON)
        response = await self._kinesis.get_shard_iterator(**kwargs)
        return str(response["ShardIterator"])

    async def read(self) -> ReadResult:
        """One GetRecords call, waiting first if the per-shard rate requires it."""
        delay = self._next_call - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self._next_call = time.monotonic() + self._min_interval_s
        if self._iterator is None:
            self._iterator = await self._new_iterator()
        try:
            response = await self._kinesis.get_records(
                ShardIterator=self._iterator, Limit=self._limit
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "ExpiredIteratorException":
                log.info("shard iterator expired, renewing", extra={"shard_id": self.shard_id})
                self._iterator = None
                return ReadResult([], None, shard_end=False)
            if code == "ProvisionedThroughputExceededException":
                # botocore already retried; back off further with full jitter.
                self._throttled_in_a_row += 1
                self._metrics.throttles.inc()
                ceiling = min(
                    self._backoff_max_s, self._min_interval_s * 2**self._throttled_in_a_row
                )
                self._next_call = time.monotonic() + random.uniform(self._min_interval_s, ceiling)
                return ReadResult([], None, shard_end=False)
            raise
        self._throttled_in_a_row = 0
        records: list[dict[str, Any]] = response.get("Records", [])
        if records:
            self._position = records[-1]["SequenceNumber"]
        self._iterator = response.get("NextShardIterator")
        return ReadResult(
            records,
            response.get("MillisBehindLatest"),
            # A closed shard read to its end has no next iterator: SHARD_END.
            shard_end=self._iterator is None,
        )
