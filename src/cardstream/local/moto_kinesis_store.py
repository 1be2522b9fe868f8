"""Kinesis records in the local emulator: constant work per write, reads by position.

moto 5.x (checked against 5.2.5) keeps a shard's records in one ``OrderedDict`` for ever:
every put lists all the shard's keys to find the last sequence number and every GetRecords
scans from the first record, so each call costs time in proportion to the shard's length
and the local stack slowed down the longer it ran. It also never trims a record, and
keeps every record object alive in its model registry.

:func:`install` gives each shard a :class:`ShardLog` (records appended to arrays, found by
position) and replaces the calls that use it, keeping what AWS documents:

- Sequence numbers are 56-digit strings, as on AWS, increasing within a shard, never shared
  by two shards of a stream, and not consecutive (a consumer must not compute one from
  another). A shard's ``StartingSequenceNumber`` is fixed when the shard is created.
- Iterators: ``TRIM_HORIZON`` (the oldest record not trimmed), ``LATEST`` (after the newest),
  ``AT_SEQUENCE_NUMBER`` and ``AFTER_SEQUENCE_NUMBER`` (a number that did not come from
  the shard is refused), ``AT_TIMESTAMP`` (the first record that arrived at or after the
  time; the trim horizon when the time is older). An iterator expires five minutes after it
  was returned (``ExpiredIteratorException``).
- GetRecords returns at most ``Limit`` records (1 to 10,000) and about 10 MiB;
  ``MillisBehindLatest`` is how long ago the last record returned arrived (zero when the
  reader is caught up: nothing after it); a closed shard read to its end gives a null
  ``NextShardIterator``.
- Records older than the stream's retention period are trimmed (when the shard is next
  read or asked for an iterator).

Puts no longer add CloudWatch data points (``IncomingRecords``, ``IncomingBytes``): moto
added two per call and kept them for ever, which nothing in the local stack reads.

Time is moto's clock (``moto.kinesis.models.utcnow``), so tests can move it.
``moto_resharding`` (installed with this module by ``cardstream.local.moto_server``) keeps
records in place when shards split or merge.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
from collections.abc import Callable
from typing import Any, Final

from moto.core.exceptions import JsonRESTError
from moto.core.utils import unix_time
from moto.kinesis import models
from moto.kinesis.exceptions import InvalidArgumentError, ResourceNotFoundError
from moto.kinesis.responses import KinesisResponse

# AWS's sequence numbers have 56 digits; shard n's are FIRST + n * SPAN + k * STEP.
FIRST_SEQUENCE: Final = 49 * 10**54
SHARD_SEQUENCE_SPAN: Final = 10**40
SEQUENCE_STEP: Final = 7
ITERATOR_LIFETIME_S: Final = 300.0
MAX_LIMIT: Final = 10_000
MAX_RESPONSE_BYTES: Final = 10 * 1024 * 1024
# Trimmed records are dropped from the arrays once they are this many and half of them.
_COMPACT_AT: Final = 1024

ITERATOR_TYPES: Final = (
    "TRIM_HORIZON",
    "LATEST",
    "AT_SEQUENCE_NUMBER",
    "AFTER_SEQUENCE_NUMBER",
    "AT_TIMESTAMP",
)


class ExpiredIteratorError(JsonRESTError):
    """``ExpiredIteratorException``: the iterator was returned more than five minutes ago."""

    def __init__(self, issued_at: float, now: float) -> None:
        super().__init__(
            error_type="ExpiredIteratorException",
            message=(
                f"Iterator expired. The iterator was created at time {issued_at * 1000:.0f} "
                f"while right now it is {now * 1000:.0f} which is further in the future than "
                f"the tolerated delay of {ITERATOR_LIFETIME_S * 1000:.0f} milliseconds."
            ),
        )


def _now() -> float:
    # moto's clock, looked up at each call so that a test can move it.
    return unix_time(models.utcnow())  # type: ignore[attr-defined]


def _data_size(data: str) -> int:
    # Bytes of a base64 string once decoded, without decoding it.
    return len(data) * 3 // 4 - data[-2:].count("=")


class ShardLog:
    """One shard's records in arrival order, addressed by position (0 = the first ever put).

    Positions below ``head`` are trimmed. Arrival times never decrease along the log, so a
    time is found by bisection.
    """

    __slots__ = ("_arrivals", "_base", "_data", "_head", "_keys", "first_sequence")

    def __init__(self, shard_number: int) -> None:
        self.first_sequence = FIRST_SEQUENCE + shard_number * SHARD_SEQUENCE_SPAN
        self._base = 0  # position of the arrays' first element
        self._head = 0  # position of the oldest record not trimmed
        self._keys: list[str] = []
        self._data: list[str] = []  # base64, as received and as returned
        self._arrivals: list[float] = []

    @property
    def head(self) -> int:
        return self._head

    @property
    def end(self) -> int:
        """Position the next record will take."""
        return self._base + len(self._keys)

    def sequence(self, position: int) -> int:
        return self.first_sequence + position * SEQUENCE_STEP

    @property
    def last_sequence(self) -> int:
        """Sequence number of the newest record (the starting one while the shard is empty)."""
        return self.sequence(self.end - 1) if self.end else self.first_sequence

    def position_of(self, sequence: int) -> int | None:
        """Position of a sequence number this shard assigned, else None."""
        offset, remainder = divmod(sequence - self.first_sequence, SEQUENCE_STEP)
        if remainder or not 0 <= offset < self.end:
            return None
        return offset

    def position_at(self, timestamp: float) -> int:
        """Position of the first record not trimmed that arrived at or after ``timestamp``."""
        index = bisect.bisect_left(self._arrivals, timestamp, lo=self._head - self._base)
        return self._base + index

    def arrival(self, position: int) -> float:
        return self._arrivals[position - self._base]

    def append(self, partition_key: str, data: str, arrival: float) -> int:
        """Add a record; its sequence number."""
        if self._arrivals and arrival < self._arrivals[-1]:
            arrival = self._arrivals[-1]  # a clock step back must not reorder the log
        self._keys.append(partition_key)
        self._data.append(data)
        self._arrivals.append(arrival)
        return self.sequence(self.end - 1)

    def trim(self, older_than: float) -> None:
        """Trim the records that arrived before ``older_than``."""
        self._head = self.position_at(older_than)
        dropped = self._head - self._base
        if dropped >= _COMPACT_AT and dropped * 2 >= len(self._keys):
            del self._keys[:dropped], self._data[:dropped], self._arrivals[:dropped]
            self._base = self._head

    def read(self, position: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Up to ``limit`` records (about 10 MiB at most) from ``position``; the next position."""
        start = max(position, self._head) - self._base
        stop = min(start + limit, len(self._keys))
        records: list[dict[str, Any]] = []
        size = 0
        index = start
        while index < stop:
            data = self._data[index]
            size += _data_size(data) + len(self._keys[index])
            if size > MAX_RESPONSE_BYTES and records:
                break
            records.append(
                {
                    "SequenceNumber": str(self.sequence(self._base + index)),
                    "ApproximateArrivalTimestamp": self._arrivals[index],
                    "Data": data,
                    "PartitionKey": self._keys[index],
                }
            )
            index += 1
        return records, self._base + index


def _iterator(stream_name: str, shard_id: str, position: int, issued_at: float) -> str:
    text = f"{stream_name}:{shard_id}:{position}:{issued_at!r}"
    return base64.b64encode(text.encode()).decode()


def _decode_iterator(shard_iterator: str) -> tuple[str, str, int, float]:
    try:
        stream_name, shard_id, position, issued_at = (
            base64.b64decode(shard_iterator, validate=True).decode().split(":")
        )
        return stream_name, shard_id, int(position), float(issued_at)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgumentError(f"Invalid ShardIterator: {shard_iterator[:64]}") from None


def _trim(stream: Any, shard: Any, now: float) -> ShardLog:
    log: ShardLog = shard.records
    log.trim(now - stream.retention_period_hours * 3600)
    return log


def _shard(backend: Any, stream: Any, shard_id: str) -> Any:
    if shard_id not in stream.shards:
        raise ResourceNotFoundError(
            message=f"Shard {shard_id} in stream {stream.stream_name} under account "
            f"{backend.account_id} does not exist"
        )
    return stream.shards[shard_id]


def _starting_position(
    log: ShardLog, iterator_type: str, sequence_number: Any, timestamp: Any, where: str
) -> int:
    if iterator_type == "TRIM_HORIZON":
        return log.head
    if iterator_type == "LATEST":
        return log.end
    if iterator_type == "AT_TIMESTAMP":
        if timestamp is None:
            raise InvalidArgumentError("Must specify timestampInMillis parameter for AT_TIMESTAMP")
        return log.position_at(float(timestamp))
    if sequence_number is None:
        raise InvalidArgumentError(
            f"Must specify StartingSequenceNumber for {iterator_type} shard iterator type"
        )
    position = log.position_of(int(sequence_number)) if str(sequence_number).isdigit() else None
    if position is None:
        raise InvalidArgumentError(
            f"StartingSequenceNumber {sequence_number} used in GetShardIterator on {where} is "
            "invalid because it did not come from this stream."
        )
    return position if iterator_type == "AT_SEQUENCE_NUMBER" else position + 1


def get_shard_iterator(
    self: Any,
    stream_arn: str | None,
    stream_name: str | None,
    shard_id: str,
    shard_iterator_type: str,
    starting_sequence_number: Any,
    at_timestamp: Any,
) -> str:
    """``KinesisBackend.get_shard_iterator``: every iterator type, positions by look-up."""
    if shard_iterator_type not in ITERATOR_TYPES:
        raise InvalidArgumentError(f"Invalid ShardIteratorType: {shard_iterator_type}")
    stream = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name)
    shard = _shard(self, stream, shard_id)
    now = _now()
    log = _trim(stream, shard, now)
    where = f"shard {shard_id} in stream {stream.stream_name} under account {self.account_id}"
    position = _starting_position(
        log, shard_iterator_type, starting_sequence_number, at_timestamp, where
    )
    return _iterator(stream.stream_name, shard_id, position, now)


def get_records(
    self: Any, stream_arn: str | None, shard_iterator: str, limit: int | None
) -> tuple[str | None, list[dict[str, Any]], int]:
    """``KinesisBackend.get_records``: the next iterator, the records (as the response
    writes them) and ``MillisBehindLatest``."""
    if limit is not None and not 1 <= int(limit) <= MAX_LIMIT:
        raise InvalidArgumentError(
            f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy "
            f"constraint: Member must have value between 1 and {MAX_LIMIT}"
        )
    stream_name, shard_id, position, issued_at = _decode_iterator(shard_iterator)
    now = _now()
    if now - issued_at > ITERATOR_LIFETIME_S:
        raise ExpiredIteratorError(issued_at, now)
    stream = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name)
    shard = _shard(self, stream, shard_id)
    log = _trim(stream, shard, now)
    records, position = log.read(position, int(limit or MAX_LIMIT))
    caught_up = position >= log.end
    millis_behind = 0
    if not caught_up:
        # How far behind now the reader is: the age of the last record it has been given.
        reached = log.arrival(position - 1 if records else position)
        millis_behind = max(0, round((now - reached) * 1000))
    if caught_up and not shard.is_open:
        # AWS: a closed shard read to its end has no next iterator (SHARD_END).
        return None, records, millis_behind
    return _iterator(stream.stream_name, shard_id, position, now), records, millis_behind


def _respond_get_records(self: Any) -> str:
    # moto's handler parsed the body once per parameter and wrote each record through its
    # generic serializer (base64-decoding the stored data to encode it again).
    body = json.loads(self.body)
    next_iterator, records, millis_behind = self.kinesis_backend.get_records(
        body.get("StreamARN"), body.get("ShardIterator", ""), body.get("Limit")
    )
    return json.dumps(
        {
            "Records": records,
            "NextShardIterator": next_iterator,
            "MillisBehindLatest": millis_behind,
        }
    )


def _respond_put_records(self: Any) -> str:
    # The body is parsed once (moto parsed the whole request once per parameter).
    body = json.loads(self.body)
    response = self.kinesis_backend.put_records(
        body.get("StreamARN"), body.get("StreamName"), body.get("Records", [])
    )
    return json.dumps(response)


def _shard_init(original: Callable[..., None]) -> Callable[..., None]:
    def init(self: Any, shard_id: int, *args: Any, **kwargs: Any) -> None:
        original(self, shard_id, *args, **kwargs)
        self.records = ShardLog(shard_id)

    return init


def _shard_put_record(self: Any, partition_key: str, data: str, explicit_hash_key: str) -> str:
    return str(self.records.append(partition_key, data, _now()))


def _shard_first_sequence(self: Any) -> int:
    return int(self.records.first_sequence)


def _shard_last_sequence(self: Any) -> int:
    return int(self.records.last_sequence)


def _no_stream_metrics(
    self: Any, stream_name: str, incoming_bytes: int, incoming_records: int
) -> None:
    # moto adds two CloudWatch data points per put call and keeps them for ever, and every
    # GetMetricStatistics scans them all: the emulator slowed down as the stack ran. AWS
    # publishes these metrics per minute; nothing in the local stack reads them.
    return


def patches() -> list[tuple[type, str, Any]]:
    """(class, attribute, replacement) for every method this module replaces."""
    return [
        (models.Shard, "__init__", _shard_init(models.Shard.__init__)),
        (models.Shard, "put_record", _shard_put_record),
        (models.Shard, "get_min_sequence_number", _shard_first_sequence),
        (models.Shard, "get_max_sequence_number", _shard_last_sequence),
        (models.KinesisBackend, "get_shard_iterator", get_shard_iterator),
        (models.KinesisBackend, "get_records", get_records),
        (models.KinesisBackend, "_send_stream_metrics", _no_stream_metrics),
        (KinesisResponse, "get_records", _respond_get_records),
        (KinesisResponse, "put_records", _respond_put_records),
    ]


def install() -> None:
    """Patch moto's Kinesis in this process (idempotent); before any stream exists."""
    if getattr(models.Shard.put_record, "cardstream_store", False):
        return
    _shard_put_record.cardstream_store = True  # type: ignore[attr-defined]
    for owner, name, replacement in patches():
        setattr(owner, name, replacement)
