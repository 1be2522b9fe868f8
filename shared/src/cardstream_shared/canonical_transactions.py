"""A fast path for transactions sent in canonical JSON form.

Validating a record with the contract (:class:`TransactionIn`) costs about 15 us, after
another 3 us to read its JSON into a dict: five of its fields and two of its model checks
run Python code. That was half of ingest-api's CPU per batched record. Records in the
canonical form (the form of the published data and of ``kaggle_example``: times as
``YYYY-MM-DD HH:MM:SS``, amounts, zips and card numbers as strings of digits, labels as
0/1 or null, no surrounding spaces) are decoded here straight from their JSON bytes into
a msgspec struct whose constraints are the contract's, in about 6 us.

The fast path accepts a subset of what the contract accepts, with the same values: a
record it declines (``None``) is not thereby invalid, it goes to the contract, which
accepts it or names every field that is wrong. ``tests/unit/test_canonical_transactions.py``
holds the two to that with generated and mutated records.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final, Literal

import msgspec

from cardstream_shared.contract import (
    CATEGORY_PATTERN,
    MAX_NAME_LENGTH,
    MAX_TEXT_LENGTH,
    STATE_PATTERN,
    TRANS_NUM_PATTERN,
)
from cardstream_shared.pan import PAN_MAX_DIGITS, PAN_MIN_DIGITS, luhn_valid

# msgspec matches patterns with re.search, where "$" also matches before a final newline:
# every pattern here is anchored with \A and \Z instead.
_TIMESTAMP: Final = r"\A[1-9][0-9]{3}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\Z"
# Plain decimal text of 0 to 9999999999.99 (contract.MAX_AMOUNT) with at most two decimals
# and no leading zero: exactly the texts the contract's Decimal gives back unchanged.
_AMOUNT: Final = r"\A(?:0|[1-9][0-9]{0,9})(?:\.[0-9]{1,2})?\Z"
_ZIP: Final = r"\A[0-9]{1,10}\Z"


def _anchored(pattern: str) -> str:
    return r"\A" + pattern.removeprefix("^").removesuffix("$") + r"\Z"


# Surrounding spaces and NUL are checked after decoding (canonical_transaction).
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH)]
LongText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_LENGTH)]
Latitude = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Longitude = Annotated[float, msgspec.Meta(ge=-180, le=180)]


class CanonicalTransaction(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One transaction in canonical form, fields in the contract's order but ``cc_num``,
    which comes last so that :func:`facts_json` can leave it out by length."""

    trans_date_trans_time: Annotated[str, msgspec.Meta(pattern=_TIMESTAMP)]
    merchant: LongText
    category: Annotated[
        str, msgspec.Meta(min_length=1, max_length=64, pattern=_anchored(CATEGORY_PATTERN))
    ]
    amt: Annotated[str, msgspec.Meta(pattern=_AMOUNT)]
    first: Name
    last: Name
    gender: Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
    street: LongText
    city: Name
    state: Annotated[str, msgspec.Meta(pattern=_anchored(STATE_PATTERN))]
    zip: Annotated[str, msgspec.Meta(pattern=_ZIP)]
    lat: Latitude
    long: Longitude
    city_pop: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)]
    job: LongText
    dob: dt.date
    trans_num: Annotated[str, msgspec.Meta(pattern=_anchored(TRANS_NUM_PATTERN))]
    unix_time: Annotated[int, msgspec.Meta(ge=0, le=10**11)]
    merch_lat: Latitude
    merch_long: Longitude
    is_fraud: Literal[0, 1] | None = None
    cc_num: Annotated[str, msgspec.Meta(min_length=PAN_MIN_DIGITS, max_length=PAN_MAX_DIGITS)]


_DECODER: Final = msgspec.json.Decoder(CanonicalTransaction)
_ENCODER: Final = msgspec.json.Encoder()
# JSON can carry NUL only as this escape; PostgreSQL text cannot hold it (contract.NO_NUL).
_NUL_ESCAPE: Final = b"\\u0000"


def canonical_transaction(raw: bytes) -> CanonicalTransaction | None:
    """The transaction of one JSON object in canonical form, or None: then the contract
    decides (it may well accept it)."""
    if _NUL_ESCAPE in raw:
        return None
    try:
        txn = _DECODER.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    # The contract strips surrounding whitespace (pydantic's strip, a subset of Python's);
    # a value with none to strip is the same value in both.
    for text in (
        txn.merchant, txn.category, txn.first, txn.last, txn.gender, txn.street, txn.city,
        txn.job,
    ):  # fmt: skip
        if text.strip() != text:
            return None
    try:
        when = dt.datetime.fromisoformat(txn.trans_date_trans_time)
    except ValueError:
        return None
    if txn.dob > when.date() or not luhn_valid(txn.cc_num):
        return None
    return txn


def facts_json(txn: CanonicalTransaction) -> bytes:
    """The JSON object of the record's facts without ``cc_num``, as the contract writes it
    (``TransactionIn`` serialized without ``cc_num``)."""
    encoded = _ENCODER.encode(txn)
    # The encoding ends with ,"cc_num":"<digits>"} (11 + digits + 2 bytes): the card
    # number is digits only, so its text needs no escaping and its length is known.
    return encoded[: -(len(txn.cc_num) + 13)] + b"}"
