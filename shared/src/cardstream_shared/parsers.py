"""Parsers for the three ways transactions arrive: a JSON array, NDJSON and the published CSV.

Each parser yields one :class:`RawRecord` per input record, in order, with either the field
mapping or the reason it could not be read; a bad record never stops the ones after it.
:func:`validate` then turns a mapping into a :class:`TransactionIn` or field-level errors
that never repeat the input values (which may contain a card number).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from pydantic import ValidationError

from cardstream_shared.canonical_transactions import CanonicalTransaction
from cardstream_shared.contract import (
    KAGGLE_FIELDS,
    SensitiveDataError,
    TransactionIn,
    sensitive_fields,
)

# The published files start with an unnamed row-index column; pandas re-exports name it so.
INDEX_COLUMNS: Final = frozenset({"", "Unnamed: 0"})
MAX_CSV_FIELD_BYTES: Final = 64 * 1024
_CONTRACT_FIELDS: Final = frozenset(TransactionIn.model_fields)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field (``field`` is None for a problem with the whole record)."""

    field: str | None
    message: str
    type: str = "value_error"

    def as_dict(self) -> dict[str, str | None]:
        """JSON form used in problem+json ``errors`` and quarantine reasons."""
        return {"field": self.field, "message": self.message, "type": self.type}


class RawRecord(msgspec.Struct):
    """A record as parsed: ``canonical`` (already valid, see canonical_transactions),
    ``data`` (to validate) or ``errors``, exactly one of them.

    A msgspec struct (made once per record of a batch): cheaper to build than a dataclass,
    and each instance gets its own empty ``errors`` list, as with a default factory."""

    index: int
    data: dict[str, Any] | None = None
    errors: list[FieldError] = []
    canonical: CanonicalTransaction | None = None


def _record_error(index: int, message: str, kind: str) -> RawRecord:
    return RawRecord(index=index, errors=[FieldError(None, message, kind)])


def parse_json_array(body: bytes | str) -> Iterator[RawRecord]:
    """Records of a JSON array of objects. A body that is not an array is one error."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        yield _record_error(0, f"body is not valid JSON: {_json_reason(exc)}", "json_invalid")
        return
    if not isinstance(document, list):
        yield _record_error(0, "body must be a JSON array of transaction objects", "type_error")
        return
    for index, item in enumerate(document):
        if isinstance(item, dict):
            yield RawRecord(index=index, data=item)
        else:
            yield _record_error(index, "record must be a JSON object", "type_error")


def parse_ndjson(lines: Iterable[bytes | str]) -> Iterator[RawRecord]:
    """Records of newline-delimited JSON; blank lines are skipped, not counted."""
    index = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            yield _record_error(
                index, f"line is not valid JSON: {_json_reason(exc)}", "json_invalid"
            )
        else:
            if isinstance(item, dict):
                yield RawRecord(index=index, data=item)
            else:
                yield _record_error(index, "line must be a JSON object", "type_error")
        index += 1


def parse_csv(lines: Iterable[str]) -> Iterator[RawRecord]:
    """Records of the published CSV: a header row, an optional unnamed index column, and
    quoted fields that may contain commas. Only known columns are allowed."""
    reader = csv.reader(iter(lines), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield _record_error(0, f"CSV header cannot be read: {exc}", "csv_invalid")
        return
    header = [name.strip().lstrip("\ufeff") for name in header]
    keep = [i for i, name in enumerate(header) if name not in INDEX_COLUMNS]
    index = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _record_error(index, f"CSV row cannot be read: {exc}", "csv_invalid")
            index += 1
            continue
        if not row:
            continue
        if len(row) != len(header):
            yield _record_error(
                index, f"row has {len(row)} columns, the header has {len(header)}", "csv_columns"
            )
        else:
            yield RawRecord(index=index, data={header[i]: row[i] for i in keep})
        index += 1


def parse_csv_bytes(body: bytes) -> Iterator[RawRecord]:
    """:func:`parse_csv` over a request body (UTF-8, with or without a byte-order mark)."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        yield _record_error(0, "CSV body is not UTF-8", "encoding")
        return
    yield from parse_csv(io.StringIO(text, newline=""))


def csv_header_ok(header: list[str]) -> bool:
    """True when a CSV header names exactly the Kaggle fields (index column optional)."""
    names = [h for h in header if h not in INDEX_COLUMNS]
    return set(names) <= set(KAGGLE_FIELDS) and "cc_num" in names


def validation_errors(error: ValidationError) -> list[FieldError]:
    """Field-level errors of a pydantic error, without the input values."""
    result = []
    for item in error.errors(include_input=False, include_url=False, include_context=False):
        loc = ".".join(str(part) for part in item["loc"]) or None
        message = item["msg"]
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        result.append(FieldError(loc, message, item["type"]))
    return result


def validate(data: dict[str, Any]) -> TransactionIn | list[FieldError]:
    """A valid transaction, or the reasons it is not one."""
    # No field name of the contract is sensitive, so a record naming only contract fields
    # (every valid record) needs no per-key look-up.
    found = [] if data.keys() <= _CONTRACT_FIELDS else sensitive_fields(data.keys())
    if found:
        message = str(SensitiveDataError(found))
        return [FieldError(name, message, "sensitive_data") for name in found]
    try:
        return TransactionIn.model_validate(data)
    except ValidationError as error:
        return validation_errors(error)


def _json_reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return type(exc).__name__
