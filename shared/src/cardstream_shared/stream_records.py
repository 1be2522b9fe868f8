"""Records that travel through the stream and land in S3: written once, read through one door.

:class:`EnvelopeWriter` writes the stream record of a valid transaction (ingest-api for
every request, the db-loader's backfill for CSV files): the bytes of
``StreamEnvelope.to_json_bytes()``, made from the transaction's facts as the door of
:mod:`cardstream_shared.transaction_input` gives them, without building a model per record.

:func:`read_stream_record` turns one record (a Kinesis record's data, or one line of a
landed object) into its :class:`StreamFacts` or the field-level reasons it is refused. The
stream-writer quarantines what it refuses; the db-loader loads the facts and quarantines
the rest. The record may not come from ingest-api (another producer, a hand-made object), so
it is checked in full every time.

Behind the door, a record in the form ingest-api writes takes the fast path
(:func:`cardstream_shared.canonical_transactions.canonical_envelope`, msgspec); every other
record, good or bad, goes through the contract
(:class:`cardstream_shared.contract.StreamEnvelope`). The fast path accepts a subset of what
the contract accepts and gives the same facts: ``tests/unit/test_stream_records.py`` holds
the two together with mutated envelopes. A record naming a key more than once is refused
naming the key (:mod:`cardstream_shared.repeated_keys`): the writer quarantines it, the
loader does not load it.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from typing import Final, NamedTuple

import msgspec
import pydantic_core
from pydantic import ValidationError

from cardstream_shared.canonical_transactions import canonical_envelope
from cardstream_shared.contract import SCHEMA_VERSION, StreamEnvelope
from cardstream_shared.field_errors import FieldError, from_validation_error, record_error
from cardstream_shared.pan import CardToken
from cardstream_shared.repeated_keys import repeated_key_errors
from cardstream_shared.transaction_input import Transaction

_VERSION_4: Final = bytes((byte & 0x0F) | 0x40 for byte in range(256))
_RFC_VARIANT: Final = bytes((byte & 0x3F) | 0x80 for byte in range(256))


def new_ingest_ids(count: int) -> list[bytes]:
    """``count`` random UUIDs (version 4, RFC 9562 5.4) in canonical text form, as ASCII.

    The values ``str(uuid.uuid4())`` gives, from one ``os.urandom`` call for all of them
    rather than a system call and a ``uuid.UUID`` each.
    """
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_RFC_VARIANT)
    text = raw.hex()
    return [
        f"{text[i : i + 8]}-{text[i + 8 : i + 12]}-{text[i + 12 : i + 16]}-"
        f"{text[i + 16 : i + 20]}-{text[i + 20 : i + 32]}".encode()
        for i in range(0, 32 * count, 32)
    ]


class EnvelopeWriter:
    """Serializes stream envelopes for one request (one client, one ``received_at``)."""

    def __init__(self, *, client_id: str, received_at: dt.datetime) -> None:
        self._lineage = b"".join(
            (
                b',"received_at":',
                pydantic_core.to_json(received_at),
                b',"client_id":',
                pydantic_core.to_json(client_id),
                b',"card_token":"',
            )
        )
        self._schema = b',"schema_version":' + str(SCHEMA_VERSION).encode() + b',"ingest_id":"'
        self._key_versions: dict[str, bytes] = {}
        self._ids: list[bytes] = []

    def reserve_ids(self, count: int) -> None:
        """Draw the ingest ids of the next ``count`` envelopes at once (one system call)."""
        self._ids = new_ingest_ids(count) + self._ids

    def to_json_bytes(
        self, txn: Transaction, card: CardToken, *, ingest_id: uuid.UUID | None = None
    ) -> bytes:
        """The envelope of ``txn`` with ``card`` in place of its PAN."""
        key_version = self._key_versions.get(card.key_version)
        if key_version is None:
            key_version = pydantic_core.to_json(card.key_version)
            self._key_versions[card.key_version] = key_version
        return b"".join(
            (
                txn.facts[:-1],
                self._schema,
                self._next_id() if ingest_id is None else str(ingest_id).encode(),
                b'"',
                self._lineage,
                # The token is hexadecimal and the last four are digits of a validated PAN:
                # neither needs JSON escaping.
                card.token.encode(),
                b'","card_last4":"',
                card.last4.encode(),
                b'","card_key_version":',
                key_version,
                b"}",
            )
        )

    def _next_id(self) -> bytes:
        if not self._ids:
            self._ids = new_ingest_ids(1)
        return self._ids.pop()


class StreamFacts(NamedTuple):
    """Everything the data model keeps of one valid record, in the text form it is stored in:
    times as ``YYYY-MM-DD HH:MM:SS``, ``received_at`` as UTC ISO 8601 with microseconds and
    ``+00:00``, amounts as plain decimals, ids as canonical text."""

    trans_num: str
    trans_date_trans_time: str
    unix_time: int
    amt: str
    category: str
    merchant: str
    merch_lat: float
    merch_long: float
    card_token: str
    card_last4: str
    card_key_version: str
    city: str
    state: str
    city_pop: int
    zip: str
    lat: float
    long: float
    street: str
    first: str
    last: str
    gender: str
    dob: dt.date
    job: str
    is_fraud: int | None
    ingest_id: str
    client_id: str
    received_at: str


def read_stream_record(data: bytes) -> StreamFacts | list[FieldError]:
    """The facts of one stream record, or why it cannot be loaded (never its values)."""
    e = canonical_envelope(data)
    if e is not None:
        # The canonical form has received_at in UTC with a "Z" and microseconds in full or
        # not at all: its stored text is written without parsing it again.
        text = e.received_at
        received = f"{text[:-1]}+00:00" if len(text) > 20 else f"{text[:-1]}.000000+00:00"
        return StreamFacts(
            e.trans_num, e.trans_date_trans_time, e.unix_time, e.amt, e.category, e.merchant,
            e.merch_lat, e.merch_long, e.card_token, e.card_last4, e.card_key_version, e.city,
            e.state, e.city_pop, e.zip, e.lat, e.long, e.street, e.first, e.last, e.gender,
            e.dob, e.job, e.is_fraud, e.ingest_id, e.client_id, received,
        )  # fmt: skip
    repeated = _repeated_keys(data)
    if repeated:
        return repeated
    try:
        envelope = StreamEnvelope.model_validate_json(data)
    except ValidationError as error:
        return from_validation_error(error)
    return contract_facts(envelope)


def _repeated_keys(data: bytes) -> list[FieldError]:
    """The keys the record names more than once (which value would count depends on the
    reader); none for text that is not JSON, which the contract refuses as such."""
    try:
        decoded = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return []
    try:
        return repeated_key_errors(data, decoded)
    except (ValueError, RecursionError):
        return record_error("not valid JSON: nested too deeply to read", "json_invalid")


def contract_facts(e: StreamEnvelope) -> StreamFacts:
    """The facts of an envelope the contract accepted (the reference for the fast path)."""
    received_at = e.received_at
    if received_at.tzinfo is None:
        # The contract says UTC; a naive value must not be shifted by the server's zone.
        received_at = received_at.replace(tzinfo=dt.UTC)
    received = received_at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return StreamFacts(
        e.trans_num, e.trans_date_trans_time.isoformat(sep=" "), e.unix_time, str(e.amt),
        e.category, e.merchant, e.merch_lat, e.merch_long, e.card_token, e.card_last4,
        e.card_key_version, e.city, e.state, e.city_pop, e.zip, e.lat, e.long, e.street,
        e.first, e.last, e.gender, e.dob, e.job, e.is_fraud, str(e.ingest_id), e.client_id,
        received,
    )  # fmt: skip
