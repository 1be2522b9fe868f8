"""The fast path behind both decoding doors, for records in canonical JSON form.

The contract (:mod:`cardstream_shared.contract`) runs Python code for five fields and two
model checks of every record, after the record's JSON was read into a dict. Records in the
canonical form (the form of the published data and of ``kaggle_example``: times as
``YYYY-MM-DD HH:MM:SS``, amounts, zips and card numbers as strings of digits, labels as
0/1 or null, no surrounding spaces, each key once), and stream records as ingest-api
writes them, are decoded here straight from their JSON bytes into msgspec structs whose
constraints are the contract's (figures in ``docs/benchmarks.md``).

The fast path accepts a subset of what the contract accepts, with the same values: a
record it declines (``None``) is not thereby invalid, it goes to the contract, which
accepts it or names every field that is wrong. Services do not call this module: they call
the doors, :mod:`cardstream_shared.transaction_input` and
:mod:`cardstream_shared.stream_records`, whose tests hold the two paths together.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Final, Literal, TypeVar

import msgspec

from cardstream_shared.card_numbers import find_card_numbers
from cardstream_shared.contract import (
    CARD_LAST4_PATTERN,
    CARD_TOKEN_PATTERN,
    CATEGORY_PATTERN,
    MAX_NAME_LENGTH,
    MAX_TEXT_LENGTH,
    STATE_PATTERN,
    TEXT_JOINER,
    TRANS_NUM_PATTERN,
    ZIP_PATTERN,
)
from cardstream_shared.pan import PAN_MAX_DIGITS, PAN_MIN_DIGITS, luhn_valid


def _unanchored(pattern: str) -> str:
    return pattern.removeprefix("^").removesuffix("$")


# The canonical text of the fields the contract checks with a pattern or parses in Python.
# msgspec would match each pattern with its own call into ``re``; the fields are joined
# with a separator none of them may contain and matched by one pattern.
_SEPARATOR: Final = "\x1f"
_FACT_PATTERNS: Final = (
    # trans_date_trans_time: four-digit years from 1000, as the contract writes them back.
    r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}",
    _unanchored(CATEGORY_PATTERN),
    # amt: plain decimal text of 0 to 9999999999.99 (contract.MAX_AMOUNT), at most two
    # decimals, no leading zero: exactly the texts the contract's Decimal gives back.
    r"(?:0|[1-9][0-9]{0,9})(?:\.[0-9]{1,2})?",
    _unanchored(STATE_PATTERN),
    _unanchored(ZIP_PATTERN),
    _unanchored(TRANS_NUM_PATTERN),
)
_LINEAGE_PATTERNS: Final = (
    # ingest_id: the text str(uuid.UUID) gives back unchanged.
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    # received_at: UTC with a "Z", microseconds in full or not at all, as pydantic writes.
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{6})?Z",
    _unanchored(CARD_TOKEN_PATTERN),
    _unanchored(CARD_LAST4_PATTERN),
)


def _joined_pattern(patterns: tuple[str, ...]) -> re.Pattern[str]:
    # fullmatch, not "$": "$" also matches before a final newline.
    return re.compile(_SEPARATOR.join(f"(?:{p})" for p in patterns))


_FACTS_FORM: Final = _joined_pattern(_FACT_PATTERNS)
_ENVELOPE_FORM: Final = _joined_pattern(_FACT_PATTERNS + _LINEAGE_PATTERNS)

# Surrounding spaces and NUL are checked after decoding (_facts_ok).
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH)]
LongText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_LENGTH)]
Latitude = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Longitude = Annotated[float, msgspec.Meta(ge=-180, le=180)]


class _CanonicalFacts(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The source facts but the card number, in the contract's field order."""

    trans_date_trans_time: str
    merchant: LongText
    category: Annotated[str, msgspec.Meta(max_length=64)]
    amt: str
    first: Name
    last: Name
    gender: Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
    street: LongText
    city: Name
    state: str
    zip: str
    lat: Latitude
    long: Longitude
    city_pop: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)]
    job: LongText
    dob: dt.date
    trans_num: str
    unix_time: Annotated[int, msgspec.Meta(ge=0, le=10**11)]
    merch_lat: Latitude
    merch_long: Longitude


class CanonicalTransaction(_CanonicalFacts, kw_only=True, forbid_unknown_fields=True):
    """One transaction as a merchant sends it; ``cc_num`` comes last (not second, as in the
    contract) so that :func:`facts_json` can leave it out by its length."""

    # UNSET while decoding when the record has no is_fraud (how many keys it named counts),
    # None once checked, as the contract has it.
    is_fraud: Literal[0, 1] | msgspec.UnsetType | None = msgspec.UNSET
    cc_num: Annotated[str, msgspec.Meta(min_length=PAN_MIN_DIGITS, max_length=PAN_MAX_DIGITS)]


class CanonicalEnvelope(_CanonicalFacts, kw_only=True, forbid_unknown_fields=True):
    """One stream record as ingest-api writes it (``StreamEnvelope.to_json_bytes``), which
    names every field, ``is_fraud`` included."""

    is_fraud: Literal[0, 1] | None
    schema_version: Literal[1]
    ingest_id: str
    received_at: str
    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    card_token: str
    card_last4: str
    card_key_version: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


_Decoded = TypeVar("_Decoded")
_DECODER: Final = msgspec.json.Decoder(CanonicalTransaction)
_ARRAY_DECODER: Final = msgspec.json.Decoder(list[CanonicalTransaction])
_ENVELOPE_DECODER: Final = msgspec.json.Decoder(CanonicalEnvelope)
_ENCODER: Final = msgspec.json.Encoder()
# JSON can carry NUL only as this escape; PostgreSQL text cannot hold it (contract.NO_NUL).
_NUL_ESCAPE: Final = b"\\u0000"


def _facts_ok(facts: _CanonicalFacts, *more_text: str) -> bool:
    """The checks msgspec does not make: nothing to strip, no card number in a text field,
    a real calendar time, born before the transaction."""
    texts = (
        facts.merchant, facts.category, facts.first, facts.last, facts.gender, facts.street,
        facts.city, facts.job, *more_text,
    )  # fmt: skip
    # The contract strips surrounding whitespace (pydantic's strip, a subset of Python's);
    # a value with none to strip is the same value in both (trans_num, a pattern, has none).
    for text in texts:
        if text.strip() != text:
            return False
    if find_card_numbers(TEXT_JOINER.join(texts)) or find_card_numbers(
        facts.trans_num, hex_id=True
    ):
        return False
    try:
        when = dt.datetime.fromisoformat(facts.trans_date_trans_time)
    except ValueError:
        return False
    return facts.dob <= when.date()


def _decoded(decoder: msgspec.json.Decoder[_Decoded], raw: bytes) -> _Decoded | None:
    if _NUL_ESCAPE in raw:
        return None
    try:
        return decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        # msgspec reports invalid UTF-8 in a string as UnicodeDecodeError, not DecodeError.
        return None


# A decoded object keeps the last value of a repeated key, so the text is held to name
# each key once: every key is followed by a colon of its own, outside any string, and the
# canonical times hold two colons each, so text with no more colons than the decoded
# record's fields and its times' colons repeats no key. (A colon in any other value sends
# the record to the contract's path, which counts keys exactly: repeated_keys.)
_TIME_COLONS: Final = 2
_TRANSACTION_KEYS: Final = len(CanonicalTransaction.__struct_fields__)
_ENVELOPE_COLONS: Final = len(CanonicalEnvelope.__struct_fields__) + 2 * _TIME_COLONS


def _transaction_colons(t: CanonicalTransaction) -> int:
    """The colons of a record in canonical form that names each of its fields once."""
    missing = t.is_fraud is msgspec.UNSET
    return _TRANSACTION_KEYS - missing + _TIME_COLONS


def _checked(t: CanonicalTransaction) -> CanonicalTransaction | None:
    form = _SEPARATOR.join(
        (t.trans_date_trans_time, t.category, t.amt, t.state, t.zip, t.trans_num)
    )
    if _FACTS_FORM.fullmatch(form) is None or not _facts_ok(t) or not luhn_valid(t.cc_num):
        return None
    if t.is_fraud is msgspec.UNSET:
        t.is_fraud = None
    return t


def canonical_transaction(raw: bytes) -> CanonicalTransaction | None:
    """The transaction of one JSON object in canonical form, or None: then the contract
    (``TransactionIn``) decides; it may well accept it."""
    t = _decoded(_DECODER, raw)
    if t is None or raw.count(b":") != _transaction_colons(t):
        return None
    return _checked(t)


def canonical_transaction_array(body: bytes) -> list[CanonicalTransaction | None] | None:
    """What :func:`canonical_transaction` gives for each element of a JSON array, read in
    one call when every element decodes in canonical form; None when one does not (then
    each element must be tried on its own)."""
    items = _decoded(_ARRAY_DECODER, body)
    # Each element holds at least its own count of colons: the sums are equal only when
    # each element's are (the array's own text holds none).
    if items is None or body.count(b":") != sum(map(_transaction_colons, items)):
        return None
    return [_checked(t) for t in items]


def canonical_envelope(line: bytes) -> CanonicalEnvelope | None:
    """The stream record of one landed line in canonical form, or None: then the contract
    (``StreamEnvelope``) decides."""
    e = _decoded(_ENVELOPE_DECODER, line)
    if e is None or line.count(b":") != _ENVELOPE_COLONS:
        return None
    form = _SEPARATOR.join(
        (
            e.trans_date_trans_time, e.category, e.amt, e.state, e.zip, e.trans_num,
            e.ingest_id, e.received_at, e.card_token, e.card_last4,
        )
    )  # fmt: skip
    if _ENVELOPE_FORM.fullmatch(form) is None:
        return None
    if not _facts_ok(e, e.client_id, e.card_key_version):
        return None
    try:
        # The pattern fixes the form; this refuses impossible calendar times.
        dt.datetime.fromisoformat(e.received_at)
    except ValueError:
        return None
    return e


def facts_json(txn: CanonicalTransaction) -> bytes:
    """The JSON object of the record's facts without ``cc_num``, as the contract writes it
    (``TransactionIn`` serialized without ``cc_num``)."""
    encoded = _ENCODER.encode(txn)
    # The encoding ends with ,"cc_num":"<digits>"} (11 + digits + 2 bytes): the card
    # number is digits only, so its text needs no escaping and its length is known.
    return encoded[: -(len(txn.cc_num) + 13)] + b"}"
