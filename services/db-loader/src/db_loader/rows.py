"""From landed NDJSON lines to staged rows: validation, dimension keys, in-batch dedupe.

This is the CPU half of a load and touches no database, so it can be tested on its own and
run off the event loop. Every line is validated again against the shared contract (defence
in depth: the object may not come from our stream-writer); a bad line becomes a quarantine
entry with its reasons and never stops the others.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

import orjson
from pydantic import ValidationError

from cardstream_shared.contract import StreamEnvelope
from cardstream_shared.parsers import validation_errors
from db_loader.quarantine import QuarantineEntry, masked_line

# Column order of the staging table and of each staged tuple.
STAGING_COLUMNS: Final = (
    "trans_num",
    "trans_date_trans_time",
    "unix_time",
    "amt",
    "category",
    "merchant_id",
    "merchant",
    "merch_lat",
    "merch_long",
    "card_token",
    "card_last4",
    "card_key_version",
    "customer_id",
    "first",
    "last",
    "gender",
    "dob",
    "job",
    "address_id",
    "street",
    "zip_area_id",
    "zip",
    "lat",
    "long",
    "city_id",
    "city",
    "state",
    "city_pop",
    "is_fraud",
    "ingest_id",
    "client_id",
    "received_at",
    "labelled_at",
)
_IS_FRAUD: Final = STAGING_COLUMNS.index("is_fraud")
_LABELLED_AT: Final = STAGING_COLUMNS.index("labelled_at")
_SEPARATOR: Final = "\x1f"


def dimension_id(kind: str, *parts: object) -> uuid.UUID:
    """128-bit key of a dimension row, a hash of its natural key.

    Every loader derives the same key for the same facts without asking the database, and
    different facts get different keys (a collision needs about 2**64 distinct rows).
    Floats use ``repr``, the shortest text that round-trips, so 36.0788 and 36.07880000001
    are different places.
    """
    text = _SEPARATOR.join([kind, *(repr(p) if isinstance(p, float) else str(p) for p in parts)])
    return uuid.UUID(bytes=hashlib.blake2b(text.encode(), digest_size=16).digest())


@lru_cache(maxsize=65_536)
def _cardholder_ids(
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
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID]:
    city_id = dimension_id("city", city, state, city_pop)
    zip_area_id = dimension_id("zip_area", zip_code, lat, long, city_id)
    address_id = dimension_id("address", street, zip_area_id)
    customer_id = dimension_id("customer", first, last, gender, dob.isoformat(), job, address_id)
    return city_id, zip_area_id, address_id, customer_id


@lru_cache(maxsize=65_536)
def _merchant_id(merchant: str) -> uuid.UUID:
    return dimension_id("merchant", merchant)


def staged_row(envelope: StreamEnvelope) -> tuple[Any, ...]:
    """The staging tuple of a valid envelope, in :data:`STAGING_COLUMNS` order."""
    e = envelope
    city_id, zip_area_id, address_id, customer_id = _cardholder_ids(
        e.city, e.state, e.city_pop, e.zip, e.lat, e.long, e.street,
        e.first, e.last, e.gender, e.dob, e.job,
    )  # fmt: skip
    received_at = e.received_at
    if received_at.tzinfo is None:
        # The contract says UTC; a naive value must not be shifted by the server's zone.
        received_at = received_at.replace(tzinfo=dt.UTC)
    return (
        e.trans_num,
        e.trans_date_trans_time,
        e.unix_time,
        e.amt,
        e.category,
        _merchant_id(e.merchant),
        e.merchant,
        e.merch_lat,
        e.merch_long,
        e.card_token,
        e.card_last4,
        e.card_key_version,
        customer_id,
        e.first,
        e.last,
        e.gender,
        e.dob,
        e.job,
        address_id,
        e.street,
        zip_area_id,
        e.zip,
        e.lat,
        e.long,
        city_id,
        e.city,
        e.state,
        e.city_pop,
        e.is_fraud,
        e.ingest_id,
        e.client_id,
        received_at,
        received_at if e.is_fraud is not None else None,
    )


@dataclass
class PreparedBatch:
    """One object's rows, validated and deduplicated, ready for one transaction."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    quarantined: list[QuarantineEntry] = field(default_factory=list)
    row_count: int = 0
    duplicates_in_batch: int = 0

    def months(self) -> set[dt.date]:
        """First day of every month the batch's transactions fall in."""
        return {row[1].date().replace(day=1) for row in self.rows}


def _as_object(line: bytes) -> dict[str, Any] | None:
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def prepare(lines: Iterable[tuple[int, bytes]]) -> PreparedBatch:
    """Validate numbered NDJSON lines; keep one staged row per ``trans_num``.

    A ``trans_num`` seen twice in one object keeps the first occurrence's facts (a retried
    put repeats the same record), with the latest fraud label any occurrence carried:
    a label may arrive after the transaction (docs/data.md).
    """
    batch = PreparedBatch()
    position: dict[str, int] = {}
    for line_number, line in lines:
        if not line.strip():
            continue
        batch.row_count += 1
        try:
            envelope = StreamEnvelope.model_validate_json(line)
        except ValidationError as error:
            errors = validation_errors(error)
            batch.quarantined.append(masked_line(line_number, line, _as_object(line), errors))
            continue
        row = staged_row(envelope)
        seen = position.get(envelope.trans_num)
        if seen is None:
            position[envelope.trans_num] = len(batch.rows)
            batch.rows.append(row)
            continue
        batch.duplicates_in_batch += 1
        if row[_IS_FRAUD] is not None:
            kept = list(batch.rows[seen])
            kept[_IS_FRAUD] = row[_IS_FRAUD]
            kept[_LABELLED_AT] = row[_LABELLED_AT]
            batch.rows[seen] = tuple(kept)
    return batch
