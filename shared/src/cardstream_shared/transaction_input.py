"""The one door for transactions as merchants send them: a request body, or a CSV file.

* :func:`read_transaction`: one JSON object (``POST /v1/transactions``);
* :func:`read_batch`: a JSON array, NDJSON or the published CSV (``POST /v1/transactions/batch``;
  :func:`read_batch_off_loop` from a server's event loop);
* :func:`read_csv`: a CSV file of any length, row by row (the db-loader's backfill).

Each answers, per record, a :class:`Transaction` (valid; the facts as the stream carries them
and the card number to tokenize) or a :class:`Rejected` (field-level errors that never repeat
a value), in input order: one bad record never costs the others. A body that cannot be read
as a whole raises :class:`BodyError`.

Behind the door, a record in canonical JSON form takes the fast path
(:mod:`cardstream_shared.canonical_transactions`, msgspec straight from its bytes); every
other record is decoded by msgspec and validated by the contract
(:class:`cardstream_shared.contract.TransactionIn`), which accepts it or names every wrong
field. Both give the same :class:`Transaction`: ``tests/unit/test_transaction_input.py``
holds them together with generated and mutated records. A record that names a key more
than once (which of its values counts depends on the reader) is refused naming the key
(:mod:`cardstream_shared.repeated_keys`; the fast path declines it), as is a CSV header
naming a column twice.

Work is bounded before it is done: a batch stops being read at the first record past
``max_records``; a record longer than :data:`MAX_RECORD_BYTES`, or with more than
:data:`MAX_FIELDS` fields, is refused without being decoded; a JSON array is split into its
elements by patterns that run in C and refuse values nested deeper than a record's field.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Iterable, Iterator
from typing import Any, Final, Literal, TypeVar

import msgspec
from pydantic import ValidationError

from cardstream_shared.canonical_transactions import (
    canonical_transaction,
    canonical_transaction_array,
    facts_json,
)
from cardstream_shared.card_numbers import find_card_numbers
from cardstream_shared.contract import (
    KAGGLE_FIELDS,
    TRANS_NUM_PATTERN,
    SensitiveDataError,
    TransactionIn,
    sensitive_fields,
)
from cardstream_shared.field_errors import FieldError, from_validation_error, record_error
from cardstream_shared.redaction import mask_card_numbers
from cardstream_shared.repeated_keys import repeated_key_errors

BatchFormat = Literal["json", "ndjson", "csv"]

# A record of the contract is under 8 KiB even with every text field at its longest and
# every character escaped; anything much longer is refused without being read.
MAX_RECORD_BYTES: Final = 64 * 1024
# A transaction has 22 fields; a record naming many more is refused without naming each.
MAX_FIELDS: Final = 32
# A batch up to this size that is an array of canonical records is read on the event loop:
# a few milliseconds, less than handing it to a thread costs a server with batches in
# flight (figures in docs/benchmarks.md); a larger one would hold the loop up too long.
IN_PLACE_BYTES: Final = 1024 * 1024
# Unknown fields named in a record's errors (the others are counted).
_NAMED_UNKNOWN_FIELDS: Final = 5
# The published files start with an unnamed row-index column; pandas re-exports name it so.
INDEX_COLUMNS: Final = frozenset({"", "Unnamed: 0"})

_CONTRACT_FIELDS: Final = frozenset(TransactionIn.model_fields)
_FACTS_EXCLUDE: Final = {"cc_num"}
_TRANS_NUM: Final = re.compile(TRANS_NUM_PATTERN)
_DECODER: Final = msgspec.json.Decoder()
_UTF8_BOM: Final = b"\xef\xbb\xbf"


class Transaction(msgspec.Struct, frozen=True, gc=False):
    """A valid transaction: its id, its card number, and every other fact as the JSON
    object the contract writes (``TransactionIn`` serialized without ``cc_num``)."""

    trans_num: str
    cc_num: str
    facts: bytes


class Rejected(msgspec.Struct, frozen=True, gc=False):
    """A refused record: why, and its ``trans_num`` when that is safe to repeat."""

    trans_num: str | None
    errors: list[FieldError]


Outcome = Transaction | Rejected
_Record = TypeVar("_Record")


class BodyError(ValueError):
    """The body cannot be read as a whole; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail


class TooManyRecordsError(BodyError):
    """The body holds more than ``limit`` records (reading stopped at the first past it)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "too-many-records", f"at most {limit} records per request")
        self.limit = limit


def read_transaction(body: bytes) -> Outcome:
    """The transaction of one JSON object; a body that is not one raises :class:`BodyError`."""
    if len(body) > MAX_RECORD_BYTES:
        raise BodyError(413, "payload-too-large", f"a record is at most {MAX_RECORD_BYTES} bytes")
    body = body.removeprefix(_UTF8_BOM)
    fast = canonical_transaction(body)
    if fast is not None:
        return Transaction(fast.trans_num, fast.cc_num, facts_json(fast))
    try:
        data = _decoded(body)
        repeated = _repeated_keys(body, data)
    except _NotJsonError as exc:
        raise BodyError(400, "json-invalid", f"the body is {exc}") from None
    if not isinstance(data, dict):
        raise BodyError(422, "validation-error", "the body must be a JSON object")
    return _refused_as_ambiguous(data, repeated) if repeated else _from_fields(data)


def read_batch(body: bytes, form: BatchFormat, *, max_records: int) -> list[Outcome]:
    """One outcome per record of a batch body, in input order.

    Raises :class:`TooManyRecordsError` at the first record past ``max_records`` and
    :class:`BodyError` when the body cannot be read as a whole (not UTF-8, not a JSON
    array, a CSV header that does not name the Kaggle fields, too many lines, ...).
    """
    # Each reading splits the body into its records first (cheap, and stopped at the first
    # record past the limit), then decodes and validates them.
    if form == "json":
        return _json_array(body.removeprefix(_UTF8_BOM), max_records)
    if form == "ndjson":
        return [_from_json(line) for line in _ndjson_lines(body, max_records)]
    lines = _csv_lines(body, max_lines=4 * max_records + 1)
    rows = _limited(_csv_rows(lines), max_records)
    return [row if isinstance(row, Rejected) else _from_fields(row) for row in rows]


async def read_batch_off_loop(body: bytes, form: BatchFormat, *, max_records: int) -> list[Outcome]:
    """:func:`read_batch` for a server's event loop, which it never holds up for long: an
    array of canonical records of at most :data:`IN_PLACE_BYTES` is read in place (one C
    call of a few milliseconds); any other body in a worker thread."""
    if form == "json" and len(body) <= IN_PLACE_BYTES:
        quick = _canonical_array(body.removeprefix(_UTF8_BOM), max_records)
        if quick is not None:
            return quick
    return await asyncio.to_thread(read_batch, body, form, max_records=max_records)


def read_csv(lines: Iterable[str]) -> Iterator[Outcome]:
    """Outcomes of the published CSV, row by row: a header row naming Kaggle fields (an
    unnamed index column optional), quoted fields that may contain commas and line breaks.
    Blank rows are skipped, not counted."""
    for row in _csv_rows(lines):
        yield row if isinstance(row, Rejected) else _from_fields(row)


def _csv_rows(lines: Iterable[str]) -> Iterator[dict[str, str] | Rejected]:
    """The rows of a CSV as field mappings (not yet validated), or why a row is unreadable."""
    reader = csv.reader(iter(lines), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise BodyError(422, "csv-header", f"the CSV header cannot be read: {exc}") from None
    header = [name.strip().lstrip("\ufeff") for name in header]
    if not _header_ok(header):
        raise BodyError(
            422,
            "csv-header",
            "text/csv needs a header row naming the Kaggle fields (cc_num included), each "
            "once, and no other column",
        )
    keep = [i for i, name in enumerate(header) if name not in INDEX_COLUMNS]
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Rejected(None, record_error(f"CSV row cannot be read: {exc}", "csv_invalid"))
            continue
        if not row:
            continue
        if len(row) != len(header):
            message = f"row has {len(row)} columns, the header has {len(header)}"
            yield Rejected(None, record_error(message, "csv_columns"))
        else:
            yield {header[i]: row[i] for i in keep}


def echoable_trans_num(data: Any) -> str | None:
    """The record's ``trans_num`` if it is safe to repeat in a response, else None.

    A rejected record's id is echoed so the caller can match results, but only when it has
    the shape of an id and does not look like a card number.
    """
    if not isinstance(data, dict):
        return None
    value = data.get("trans_num")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not _TRANS_NUM.match(value) or find_card_numbers(value, hex_id=True):
        return None
    return value


# --- one record -----------------------------------------------------------------------------


class _NotJsonError(ValueError):
    pass


def _decoded(raw: bytes) -> Any:
    try:
        return _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise _NotJsonError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise _NotJsonError("not valid JSON: nested too deeply") from None


def _from_json(raw: bytes) -> Outcome:
    if len(raw) > MAX_RECORD_BYTES:
        message = f"record exceeds {MAX_RECORD_BYTES} bytes"
        return Rejected(None, record_error(message, "too_large"))
    fast = canonical_transaction(raw)
    if fast is not None:
        return Transaction(fast.trans_num, fast.cc_num, facts_json(fast))
    try:
        data = _decoded(raw)
        repeated = _repeated_keys(raw, data)
    except _NotJsonError as exc:
        return Rejected(None, record_error(str(exc), "json_invalid"))
    return _refused_as_ambiguous(data, repeated) if repeated else _from_fields(data)


def _repeated_keys(raw: bytes, data: Any) -> list[FieldError]:
    """The keys ``raw`` (valid JSON, ``data`` its value) repeats, as field errors."""
    try:
        return repeated_key_errors(raw, data)
    except RecursionError:
        raise _NotJsonError("not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise _NotJsonError(f"not valid JSON: {exc}") from None


def _refused_as_ambiguous(data: Any, repeated: list[FieldError]) -> Rejected:
    """A record naming a key more than once: its ``trans_num`` is echoed only when it is
    not one of them."""
    ambiguous = any(error.field == "trans_num" for error in repeated)
    return Rejected(None if ambiguous else echoable_trans_num(data), repeated)


def _from_fields(data: Any) -> Outcome:
    """The contract's verdict on a decoded record."""
    if not isinstance(data, dict):
        return Rejected(None, record_error("record must be a JSON object", "type_error"))
    trans_num = echoable_trans_num(data)
    if len(data) > MAX_FIELDS:
        message = f"record has {len(data)} fields; a transaction has {len(KAGGLE_FIELDS)}"
        return Rejected(trans_num, record_error(message, "too_many_fields"))
    unknown = [name for name in data if name not in _CONTRACT_FIELDS]
    if not unknown:
        # Every valid record: no field name of the contract is sensitive.
        return _validated(data, trans_num, [])
    found = sensitive_fields(unknown)
    if found:
        message = str(SensitiveDataError(found))
        return Rejected(trans_num, [FieldError(name, message, "sensitive_data") for name in found])
    # Unknown fields are named here (the first few; a name may hold a card number, so it is
    # masked), the rest of the record is left to the contract, whose errors are reported too.
    errors = [
        FieldError(mask_card_numbers(name), "unknown field", "extra_forbidden")
        for name in unknown[:_NAMED_UNKNOWN_FIELDS]
    ]
    if len(unknown) > _NAMED_UNKNOWN_FIELDS:
        more = f"and {len(unknown) - _NAMED_UNKNOWN_FIELDS} more unknown fields"
        errors.append(FieldError(None, more, "extra_forbidden"))
    return _validated({k: v for k, v in data.items() if k in _CONTRACT_FIELDS}, trans_num, errors)


def _validated(data: dict[str, Any], trans_num: str | None, errors: list[FieldError]) -> Outcome:
    try:
        txn = TransactionIn.model_validate(data)
    except ValidationError as error:
        return Rejected(trans_num, from_validation_error(error) + errors)
    if errors:
        return Rejected(trans_num, errors)
    facts = txn.__pydantic_serializer__.to_json(txn, exclude=_FACTS_EXCLUDE)
    return Transaction(txn.trans_num, txn.cc_num, facts)


def _limited(records: Iterable[_Record], max_records: int) -> list[_Record]:
    result: list[_Record] = []
    for record in records:
        if len(result) == max_records:
            raise TooManyRecordsError(max_records)
        result.append(record)
    return result


# --- JSON array -----------------------------------------------------------------------------


def _canonical_array(body: bytes, max_records: int) -> list[Outcome] | None:
    """The transactions of an array of canonical records (the common case), read in one
    msgspec call that stops at the first element that is not one; None for other bodies."""
    txns = canonical_transaction_array(body)
    if txns is None:
        return None
    if len(txns) > max_records:
        raise TooManyRecordsError(max_records)
    if None in txns:
        return None
    return [Transaction(t.trans_num, t.cc_num, facts_json(t)) for t in txns if t is not None]


def _json_array(body: bytes, max_records: int) -> list[Outcome]:
    quick = _canonical_array(body, max_records)
    if quick is not None:
        return quick
    outcomes = [_from_json(element) for element in _array_elements(body, max_records)]
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, Rejected) and outcome.errors[0].type == "json_invalid":
            # An element that is not JSON makes the whole body not JSON.
            detail = f"element {index} of the array is {outcome.errors[0].message}"
            raise BodyError(400, "json-invalid", detail)
    return outcomes


# A JSON string; a container (array or object) whose values may be containers of scalars
# (one level more than a record needs, so that a field holding an object or an array is
# that record's error, not the body's); anything else up to the next delimiter is a scalar
# (a number, true, false, null, or junk that msgspec refuses when it reads the element).
# Possessive quantifiers: no backtracking, so each element is matched in linear time.
_STRING: Final = rb'"(?:[^"\\]++|\\.)*+"'


def _container(values: bytes) -> bytes:
    """An array or object whose values are strings, scalars or ``values``."""
    return rb'[\[{](?:[^\[\]{}"]++|' + _STRING + values + rb")*+[\]}]"


_ELEMENT: Final = re.compile(
    rb"[ \t\n\r]*+("
    + _container(b"|" + _container(b""))
    + b"|"
    + _STRING
    + rb'|[^\[\]{},"\s]++)[ \t\n\r]*+([,\]])',
    re.DOTALL,
)
# The first characters of a JSON value other than an array.
_OTHER_JSON_STARTS: Final = tuple(bytes([c]) for c in b'{"-0123456789tfn')
_ARRAY_START: Final = re.compile(rb"[ \t\n\r]*+\[[ \t\n\r]*+(\])?")
_TRAILING: Final = re.compile(rb"[ \t\n\r]*+")


def _array_elements(body: bytes, max_records: int) -> list[bytes]:
    """The elements of a JSON array as bytes, without reading them."""
    start = _ARRAY_START.match(body)
    if start is None:
        if body.lstrip()[:1] in _OTHER_JSON_STARTS:
            raise BodyError(422, "validation-error", "the body must be a JSON array of records")
        raise BodyError(400, "json-invalid", "the body is not JSON")
    elements: list[bytes] = []
    position = start.end()
    closed = start.group(1) is not None
    while not closed:
        match = _ELEMENT.match(body, position)
        if match is None:
            raise BodyError(
                400,
                "json-invalid",
                f"the body is not a JSON array of transaction records at byte {position}: "
                "malformed, or nested deeper than a record's fields",
            )
        if len(elements) == max_records:
            raise TooManyRecordsError(max_records)
        elements.append(match.group(1))
        position = match.end()
        closed = match.group(2) == b"]"
    if _TRAILING.fullmatch(body, position) is None:
        raise BodyError(400, "json-invalid", "the body has characters after the JSON array")
    return elements


# --- NDJSON and CSV -------------------------------------------------------------------------

# A line from its first character that is not whitespace to its end: blank lines are
# skipped inside the pattern's search, at C speed, however many there are.
_NDJSON_LINE: Final = re.compile(rb"[^ \t\n\r\x0b\x0c][^\n]*")


def _ndjson_lines(body: bytes, max_records: int) -> list[bytes]:
    lines = _NDJSON_LINE.finditer(body.removeprefix(_UTF8_BOM))
    return _limited((line.group() for line in lines), max_records)


def _csv_lines(body: bytes, *, max_lines: int) -> Iterator[str]:
    """The lines of a CSV body, each at most a record long, at most ``max_lines`` of them
    (blank lines and the lines of quoted fields that span several included): each line
    costs a turn of a Python loop, and an 8 MiB body may hold millions of blank ones."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BodyError(400, "encoding", f"the CSV body is not UTF-8: {exc.reason}") from None
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        if number > max_lines:
            raise BodyError(413, "payload-too-large", f"a CSV body has at most {max_lines} lines")
        if len(line) > MAX_RECORD_BYTES:
            raise BodyError(
                413, "payload-too-large", f"CSV line {number} exceeds a record's length"
            )
        yield line


def _header_ok(header: list[str]) -> bool:
    names = [h for h in header if h not in INDEX_COLUMNS]
    # A column named twice would leave one of its cells unread, as a repeated JSON key.
    return set(names) <= set(KAGGLE_FIELDS) and "cc_num" in names and len(set(names)) == len(names)
