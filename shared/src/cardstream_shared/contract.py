"""The transaction contract: what merchants send and what travels through the stream.

``TransactionIn`` is the Kaggle "Credit Card Transactions Fraud Detection" schema as merchant
systems send it. ``StreamEnvelope`` is what ingest-api puts on Kinesis: the same facts with
the card number replaced by its token, last four digits and key version, plus ingest
lineage. Validation refuses what is impossible or dangerous, not what is merely unusual:
every row of the published files passes.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from cardstream_shared.card_numbers import HEX_ID_FIELDS, find_card_numbers
from cardstream_shared.pan import PAN_MAX_DIGITS, PAN_MIN_DIGITS, CardToken, luhn_valid

SCHEMA_VERSION: Final = 1
TIMESTAMP_FORMAT: Final = "%Y-%m-%d %H:%M:%S"

# Field order of the published CSV after its unnamed index column.
KAGGLE_FIELDS: Final = (
    "trans_date_trans_time",
    "cc_num",
    "merchant",
    "category",
    "amt",
    "first",
    "last",
    "gender",
    "street",
    "city",
    "state",
    "zip",
    "lat",
    "long",
    "city_pop",
    "job",
    "dob",
    "trans_num",
    "unix_time",
    "merch_lat",
    "merch_long",
    "is_fraud",
)

# Sensitive authentication data (PCI DSS 3.3): never accepted, never stored, never logged.
# Compared after lower-casing and dropping everything but letters and digits.
SENSITIVE_FIELD_NAMES: Final = frozenset(
    {
        "cvv",
        "cvv2",
        "cvc",
        "cvc2",
        "cid",
        "cav2",
        "cvn",
        "cvd",
        "csc",
        "securitycode",
        "cardsecuritycode",
        "cardverificationvalue",
        "cardverificationcode",
        "pin",
        "pinblock",
        "pincode",
        "encryptedpin",
        "track",
        "track1",
        "track2",
        "track3",
        "trackdata",
        "magstripe",
        "magneticstripe",
        "stripe",
        "icc",
        "chipdata",
        "emvdata",
    }
)

MAX_NAME_LENGTH: Final = 100
MAX_TEXT_LENGTH: Final = 200
MAX_AMOUNT: Final = Decimal("9999999999.99")  # numeric(12,2)
TRANS_NUM_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
CATEGORY_PATTERN: Final = r"^[A-Za-z0-9_ &-]+$"
STATE_PATTERN: Final = r"^[A-Z]{2}$"
ZIP_PATTERN: Final = r"^[0-9]{1,10}$"
CARD_TOKEN_PATTERN: Final = r"^[0-9a-f]{64}$"  # noqa: S105 - a pattern, not a secret
CARD_LAST4_PATTERN: Final = r"^[0-9]{4}$"


_NOT_LETTER_OR_DIGIT: Final = re.compile(r"[^a-z0-9]")


def normalized_field_name(name: str) -> str:
    """Lower-case letters and digits only: ``CVV-2`` and ``cvv_2`` both become ``cvv2``."""
    return _NOT_LETTER_OR_DIGIT.sub("", name.lower())


def sensitive_fields(keys: Any) -> list[str]:
    """Names among ``keys`` that carry sensitive authentication data."""
    return [str(k) for k in keys if normalized_field_name(str(k)) in SENSITIVE_FIELD_NAMES]


class SensitiveDataError(ValueError):
    """A record carried CVV, PIN or track data; the values are never repeated."""

    def __init__(self, fields: list[str]) -> None:
        self.fields = fields
        super().__init__(
            "sensitive authentication data is never accepted (PCI DSS 3.3); remove field(s): "
            + ", ".join(sorted(fields))
        )


def _strip_str(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _digits(value: Any) -> Any:
    # CSV gives strings, JSON may give numbers; identifiers are kept as strings of digits.
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    return _strip_str(value)


# The canonical form is parsed by fromisoformat, which is much cheaper than strptime (figures
# in docs/benchmarks.md); anything else takes the strptime path.
_CANONICAL_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}")


def _parse_timestamp(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if _CANONICAL_TIMESTAMP.fullmatch(text):
            try:
                return dt.datetime.fromisoformat(text)
            except ValueError:
                raise ValueError("must be a timestamp 'YYYY-MM-DD HH:MM:SS'") from None
        for fmt in (TIMESTAMP_FORMAT, "%Y-%m-%dT%H:%M:%S"):
            try:
                return dt.datetime.strptime(text, fmt)
            except ValueError:
                continue
        raise ValueError("must be a timestamp 'YYYY-MM-DD HH:MM:SS'")
    return value


def _parse_amount(value: Any) -> Any:
    if isinstance(value, float):
        # repr gives the shortest string that round-trips, i.e. what the sender wrote.
        return Decimal(repr(value))
    if isinstance(value, str):
        return value.strip()
    return value


def _parse_fraud(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return None
        if text in ("0", "1"):
            return int(text)
        raise ValueError("must be 0 or 1")
    if isinstance(value, bool):
        return int(value)
    return value


def _format_timestamp(value: dt.datetime) -> str:
    return value.strftime(TIMESTAMP_FORMAT)


Timestamp = Annotated[
    dt.datetime,
    BeforeValidator(_parse_timestamp),
    PlainSerializer(_format_timestamp, return_type=str),
]
DigitString = Annotated[str, BeforeValidator(_digits)]
# Stripped by the models' str_strip_whitespace, natively: no Python call per text field.
Text = str
# PostgreSQL text cannot hold NUL: a record carrying one would be accepted here and then
# fail its whole object in the loader, so it is refused at the edge instead.
NO_NUL: Final = r"^[^\x00]*$"
Amount = Annotated[
    Decimal,
    BeforeValidator(_parse_amount),
    Field(ge=0, le=MAX_AMOUNT, decimal_places=2),
    PlainSerializer(lambda v: format(v, "f"), return_type=str),
]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
FraudLabel = Annotated[Literal[0, 1] | None, BeforeValidator(_parse_fraud)]


class _TransactionFacts(BaseModel):
    """Every source fact except the card number, shared by input and envelope."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    trans_date_trans_time: Timestamp = Field(description="Transaction time as sent (local).")
    merchant: Text = Field(pattern=NO_NUL, min_length=1, max_length=MAX_TEXT_LENGTH)
    category: Text = Field(min_length=1, max_length=64, pattern=CATEGORY_PATTERN)
    amt: Amount = Field(description="Amount, at most two decimals.")
    first: Text = Field(pattern=NO_NUL, min_length=1, max_length=MAX_NAME_LENGTH)
    last: Text = Field(pattern=NO_NUL, min_length=1, max_length=MAX_NAME_LENGTH)
    gender: Text = Field(pattern=NO_NUL, min_length=1, max_length=16)
    street: Text = Field(pattern=NO_NUL, min_length=1, max_length=MAX_TEXT_LENGTH)
    city: Text = Field(pattern=NO_NUL, min_length=1, max_length=MAX_NAME_LENGTH)
    state: Text = Field(pattern=STATE_PATTERN, description="Two-letter state code.")
    # Published files write zips as integers, so New England zips lose their leading zero;
    # they are kept as sent (digits), not re-padded.
    zip: DigitString = Field(pattern=ZIP_PATTERN)
    lat: Latitude
    long: Longitude
    city_pop: int = Field(ge=0, le=100_000_000)
    job: Text = Field(pattern=NO_NUL, min_length=1, max_length=MAX_TEXT_LENGTH)
    dob: dt.date
    trans_num: Text = Field(
        pattern=TRANS_NUM_PATTERN, description="Unique id; the idempotency key."
    )
    unix_time: int = Field(ge=0, le=10**11, description="Unix time as sent (not recomputed).")
    merch_lat: Latitude
    merch_long: Longitude
    is_fraud: FraudLabel = Field(default=None, description="0 or 1; may arrive later or never.")

    @model_validator(mode="before")
    @classmethod
    def _refuse_sensitive_data(cls, data: Any) -> Any:
        # No field name of these models is sensitive: a record naming only fields (every
        # valid one) needs no per-key check.
        if isinstance(data, dict) and not data.keys() <= cls.model_fields.keys():
            found = sensitive_fields(data.keys())
            if found:
                raise SensitiveDataError(found)
        return data

    @model_validator(mode="after")
    def _born_before_transaction(self) -> _TransactionFacts:
        if self.dob > self.trans_date_trans_time.date():
            raise ValueError("dob is after the transaction date")
        return self

    # The fields that hold text: an id (trans_num) and free text (the others are numbers,
    # dates, or patterns of fewer digits than a card number has).
    TEXT_FIELDS: ClassVar[tuple[str, ...]] = (
        "trans_num", "merchant", "category", "first", "last", "gender", "street", "city", "job",
    )  # fmt: skip

    @model_validator(mode="after")
    def _refuse_card_numbers(self) -> _TransactionFacts:
        # PCI DSS 3.3-3.5: a card number is accepted in cc_num only, where it is tokenized;
        # anywhere else it would be stored and shown in clear. One search over every free
        # text field at once and one over the id (read as a hexadecimal id); the fields are
        # looked at one by one only when a search finds something.
        texts = {name: getattr(self, name) for name in self.TEXT_FIELDS}
        free_text = TEXT_JOINER.join(t for n, t in texts.items() if n not in HEX_ID_FIELDS)
        if not (find_card_numbers(free_text) or find_card_numbers(self.trans_num, hex_id=True)):
            return self
        errors = [
            InitErrorDetails(type=_CARD_NUMBER_ERROR, loc=(name,), input=None)
            for name, text in texts.items()
            if find_card_numbers(text, hex_id=name in HEX_ID_FIELDS)
        ]
        raise ValidationError.from_exception_data(type(self).__name__, errors)


# Joins text fields for one search: not a separator, a letter or a digit, so no card number
# is seen across two fields.
TEXT_JOINER: Final = "\x00"
_CARD_NUMBER_ERROR: Final = PydanticCustomError(
    "card_number",
    "holds a card number; card numbers are accepted in cc_num only, where they are tokenized",
)


def refuse_card_numbers(text: str) -> str:
    """``text`` unchanged; a pydantic ``card_number`` error (naming no value) if it holds a
    card number. For free text the API takes outside the contract, such as alert notes."""
    if find_card_numbers(text):
        raise _CARD_NUMBER_ERROR
    return text


class TransactionIn(_TransactionFacts):
    """One transaction as a merchant sends it (the Kaggle schema)."""

    cc_num: DigitString = Field(
        description="Card number (PAN), 11 to 19 digits passing the Luhn check. Tokenized at "
        "the edge; never stored or echoed.",
        json_schema_extra={"format": "pan"},
    )

    @field_validator("cc_num")
    @classmethod
    def _valid_pan(cls, value: str) -> str:
        if (
            not (value.isascii() and value.isdigit())
            or not PAN_MIN_DIGITS <= len(value) <= PAN_MAX_DIGITS
        ):
            raise ValueError(f"must be {PAN_MIN_DIGITS} to {PAN_MAX_DIGITS} digits")
        if not luhn_valid(value):
            raise ValueError("is not a valid card number (Luhn check failed)")
        return value


class StreamEnvelope(_TransactionFacts):
    """What travels on Kinesis and lands in S3: no PAN, plus ingest lineage."""

    schema_version: Literal[1] = SCHEMA_VERSION
    ingest_id: uuid.UUID
    received_at: dt.datetime = Field(description="When ingest-api accepted the record (UTC).")
    client_id: str = Field(
        pattern=NO_NUL, min_length=1, max_length=256, description="The token's subject."
    )
    card_token: str = Field(pattern=CARD_TOKEN_PATTERN)
    card_last4: str = Field(pattern=CARD_LAST4_PATTERN)
    card_key_version: str = Field(min_length=1, max_length=32)

    TEXT_FIELDS: ClassVar[tuple[str, ...]] = (
        *_TransactionFacts.TEXT_FIELDS,
        "client_id",
        "card_key_version",
    )

    @classmethod
    def from_transaction(
        cls,
        txn: TransactionIn,
        card: CardToken,
        *,
        client_id: str,
        received_at: dt.datetime,
        ingest_id: uuid.UUID | None = None,
    ) -> StreamEnvelope:
        """Replace the PAN of ``txn`` by its token and add lineage."""
        facts = {name: getattr(txn, name) for name in _TransactionFacts.model_fields}
        return cls.model_construct(
            **facts,
            schema_version=SCHEMA_VERSION,
            ingest_id=ingest_id or uuid.uuid4(),
            received_at=received_at,
            client_id=client_id,
            card_token=card.token,
            card_last4=card.last4,
            card_key_version=card.key_version,
        )

    def to_json_bytes(self) -> bytes:
        """Compact JSON for the stream (one record, no trailing newline)."""
        return self.model_dump_json().encode()


def kaggle_example() -> dict[str, Any]:
    """One row of the published data, used for OpenAPI examples and documentation."""
    return {
        "trans_date_trans_time": "2019-01-01 00:00:18",
        "cc_num": "2703186189652095",
        "merchant": "fraud_Rippin, Kub and Mann",
        "category": "misc_net",
        "amt": "4.97",
        "first": "Jennifer",
        "last": "Banks",
        "gender": "F",
        "street": "561 Perry Cove",
        "city": "Moravian Falls",
        "state": "NC",
        "zip": "28654",
        "lat": 36.0788,
        "long": -81.1781,
        "city_pop": 3495,
        "job": "Psychologist, counselling",
        "dob": "1988-03-09",
        "trans_num": "0b242abb623afc578575680df30655b9",
        "unix_time": 1325376018,
        "merch_lat": 36.011293,
        "merch_long": -82.048315,
        "is_fraud": 0,
    }
