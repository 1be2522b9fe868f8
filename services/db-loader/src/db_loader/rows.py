"""From landed NDJSON lines to prepared rows: validation, dimension keys, in-batch dedupe.

This is the CPU half of a load and touches no database, so it can be tested on its own and
run off the event loop. Every line is read again through the shared door
(:func:`cardstream_shared.stream_records.read_stream_record`; defence in depth: the object
may not come from our stream-writer); a bad line becomes a quarantine entry with its
reasons and never stops the others.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

import msgspec

from cardstream_shared.field_errors import record_error
from cardstream_shared.stream_records import StreamFacts, read_stream_record
from db_loader.object_reader import Limits, Line, OverlongLine, decode_lines, is_gzip_key
from db_loader.quarantine import QuarantineEntry, masked_line

# Column order of each fact's CSV record (the loader puts the object id in front).
FACT_COLUMNS: Final = (
    "trans_num",
    "trans_date_trans_time",
    "unix_time",
    "amt",
    "category",
    "merchant_id",
    "merch_lat",
    "merch_long",
    "card_token",
    "customer_id",
    "is_fraud",
    "labelled_at",
    "ingest_id",
    "client_id",
    "received_at",
)
# Dimension tables in foreign-key order (parents first), each with its columns, key first.
DIMENSION_COLUMNS: Final = {
    "city": ("city_id", "city", "state", "city_pop"),
    "zip_area": ("zip_area_id", "zip", "city_id", "lat", "long"),
    "address": ("address_id", "street", "zip_area_id"),
    "customer": ("customer_id", "first", "last", "gender", "dob", "job", "address_id"),
    "card": ("card_token", "card_last4", "card_key_version"),
    "merchant": ("merchant_id", "merchant"),
    "category": ("category",),
}
_SEPARATOR: Final = "\x1f"
# The fields before is_fraud in a fact record never contain a comma (patterns, numbers,
# uuids, timestamps), nor do is_fraud and labelled_at: a record splits at fixed commas.
_LABEL_FIELD: Final = FACT_COLUMNS.index("is_fraud")
_FRAUD_TEXT: Final = {None: "", 0: "0", 1: "1"}


def dimension_id(kind: str, *parts: object) -> uuid.UUID:
    """128-bit key of a dimension row, a hash of its natural key.

    Every loader derives the same key for the same facts without asking the database, and
    different facts get different keys (a collision needs about 2**64 distinct rows).
    Floats use ``repr``, the shortest text that round-trips, so 36.0788 and 36.07880000001
    are different places.
    """
    text = _SEPARATOR.join([kind, *(repr(p) if isinstance(p, float) else str(p) for p in parts)])
    return uuid.UUID(bytes=hashlib.blake2b(text.encode(), digest_size=16).digest())


# Ids travel as text: that is what the CSV record needs, and str(UUID) costs a call each.
@lru_cache(maxsize=65_536)
def _merchant_id(merchant: str) -> str:
    return str(dimension_id("merchant", merchant))


@lru_cache(maxsize=65_536)
def _cardholder(
    city: str,
    state: str,
    city_pop: int,
    zip_code: str,
    lat: float,
    long: float,
    street: str,
    first: str,
    last: str,
    gender: str,
    dob: dt.date,
    job: str,
) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
    """The city, ZIP area, address and customer rows of one cardholder's facts."""
    city_id = dimension_id("city", city, state, city_pop)
    zip_area_id = dimension_id("zip_area", zip_code, lat, long, city_id)
    address_id = dimension_id("address", street, zip_area_id)
    customer_id = dimension_id("customer", first, last, gender, dob.isoformat(), job, address_id)
    return (
        (str(city_id), city, state, city_pop),
        (str(zip_area_id), zip_code, str(city_id), lat, long),
        (str(address_id), street, str(zip_area_id)),
        (str(customer_id), first, last, gender, dob, job, str(address_id)),
    )


@lru_cache(maxsize=1_024)
def _csv_text(value: str) -> str:
    """``value`` as one field of a COPY CSV record (quoted when it must be)."""
    if any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def split_label(record: str) -> tuple[str, int | None, str | None, str]:
    """A fact record as (fields before the label, is_fraud, labelled_at, fields after)."""
    parts = record.split(",", _LABEL_FIELD)
    fraud, labelled, tail = parts.pop().split(",", 2)
    return ",".join(parts), int(fraud) if fraud else None, labelled or None, tail


def with_label(record: str, is_fraud: int, labelled_at: str) -> str:
    """``record`` carrying another fraud label."""
    head, _, _, tail = split_label(record)
    return f"{head},{is_fraud},{labelled_at},{tail}"


@dataclass
class PreparedBatch:
    """One object's rows, validated and deduplicated, ready for one transaction.

    ``fact_records`` has one COPY CSV record (:data:`FACT_COLUMNS`, no line end) per
    distinct ``trans_num``, in first-seen order; ``trans_nums`` and ``times`` name each
    record's key and timestamp text. Text crosses the worker-process boundary about ten
    times cheaper than pickled tuples. ``dimensions`` has one row per distinct key, per
    table of :data:`DIMENSION_COLUMNS`.
    """

    trans_nums: list[str] = field(default_factory=list)
    times: list[str] = field(default_factory=list)
    fact_records: list[str] = field(default_factory=list)
    months: set[dt.date] = field(default_factory=set)
    dimensions: dict[str, dict[Any, tuple[Any, ...]]] = field(
        default_factory=lambda: {table: {} for table in DIMENSION_COLUMNS}
    )
    quarantined: list[QuarantineEntry] = field(default_factory=list)
    row_count: int = 0
    duplicates_in_batch: int = 0

    @property
    def fact_count(self) -> int:
        return len(self.trans_nums)

    def add(self, f: StreamFacts) -> None:
        """Record the dimension rows and the fact record of a new ``trans_num``."""
        (
            trans_num, time, unix_time, amt, category, merchant, merch_lat, merch_long,
            card_token, card_last4, card_key_version, city, state, city_pop, zip_code, lat,
            long, street, first, last, gender, dob, job, is_fraud, ingest_id, client_id,
            received,
        ) = f  # fmt: skip
        dims = self.dimensions
        city_row, zip_area, address, customer = _cardholder(
            city, state, city_pop, zip_code, lat, long, street, first, last, gender, dob, job
        )
        customer_id = customer[0]
        if customer_id not in dims["customer"]:
            dims["city"][city_row[0]] = city_row
            dims["zip_area"][zip_area[0]] = zip_area
            dims["address"][address[0]] = address
            dims["customer"][customer_id] = customer
        if card_token not in dims["card"]:
            dims["card"][card_token] = (card_token, card_last4, card_key_version)
        merchant_id = _merchant_id(merchant)
        if merchant_id not in dims["merchant"]:
            dims["merchant"][merchant_id] = (merchant_id, merchant)
        if category not in dims["category"]:
            dims["category"][category] = (category,)
        # Floats by repr, which PostgreSQL reads back to the same double; an empty
        # unquoted field is NULL (valid text is never empty: the contract strips it and
        # requires a character).
        self.fact_records.append(
            f"{trans_num},{time},{unix_time},{amt},{category},{merchant_id},{merch_lat!r},"
            f"{merch_long!r},{card_token},{customer_id},{_FRAUD_TEXT[is_fraud]},"
            f"{received if is_fraud is not None else ''},{ingest_id},{_csv_text(client_id)},"
            f"{received}"
        )
        self.trans_nums.append(trans_num)
        self.times.append(time)


def _as_object(line: bytes) -> dict[str, Any] | None:
    try:
        data = msgspec.json.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def prepare(lines: Iterable[Line]) -> PreparedBatch:
    """Validate numbered NDJSON lines; keep one fact per ``trans_num``.

    A ``trans_num`` seen twice in one object keeps the first occurrence's facts (a retried
    put repeats the same record), with the latest fraud label any occurrence carried:
    a label may arrive after the transaction (docs/data-model.md, late fraud labels).
    """
    batch = PreparedBatch()
    position: dict[str, int] = {}
    months: set[str] = set()
    for line_number, line in lines:
        if isinstance(line, OverlongLine):
            batch.row_count += 1
            reason = record_error(f"line exceeds {line.limit} bytes", "line_too_long")
            batch.quarantined.append(masked_line(line_number, line.excerpt, None, reason))
            continue
        if not line.strip():
            continue
        batch.row_count += 1
        facts = read_stream_record(line)
        if isinstance(facts, list):
            batch.quarantined.append(masked_line(line_number, line, _as_object(line), facts))
            continue
        seen = position.get(facts.trans_num)
        if seen is None:
            position[facts.trans_num] = len(batch.trans_nums)
            months.add(facts.trans_date_trans_time[:7])
            batch.add(facts)
            continue
        batch.duplicates_in_batch += 1
        if facts.is_fraud is not None:
            batch.fact_records[seen] = with_label(
                batch.fact_records[seen], facts.is_fraud, facts.received_at
            )
    batch.months = {dt.date(int(month[:4]), int(month[5:7]), 1) for month in months}
    return batch


def prepare_object(key: str, body: bytes, limits: Limits) -> PreparedBatch:
    """Decode and prepare a whole object (a picklable entry point for worker processes)."""
    return prepare(decode_lines([body], gzipped=is_gzip_key(key), limits=limits))
