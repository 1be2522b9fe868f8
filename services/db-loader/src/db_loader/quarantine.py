"""Rows that cannot be loaded: kept with their reasons, never with a card number.

A quarantined line may not come from our stream-writer, so it may carry anything, a PAN
included; what is stored is the line with every PAN-like value masked (the shared redaction
rule: 11 to 19 digits passing the Luhn check) and sensitive authentication fields dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

from cardstream_shared.contract import sensitive_fields
from cardstream_shared.field_errors import FieldError
from cardstream_shared.redaction import REDACTED, redact_text

if TYPE_CHECKING:
    from db_loader.db import DbConnection

# Enough of a bad line to diagnose it; the object itself stays in S3.
MAX_STORED_CHARS: Final = 4096


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One rejected line: where it was, why, and a masked copy."""

    line_number: int
    reasons: list[dict[str, str | None]]
    row_masked: dict[str, Any] | None
    raw_masked: str | None


def mask_value(value: Any) -> Any:
    """``value`` with every PAN-like number or string masked, recursively."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        text = str(value)
        masked = redact_text(text)
        return value if masked == text else masked
    if isinstance(value, list):
        return [mask_value(item) for item in value]
    if isinstance(value, dict):
        sensitive = set(sensitive_fields(value.keys()))
        return {
            str(key): REDACTED if str(key) in sensitive else mask_value(item)
            for key, item in value.items()
        }
    return redact_text(str(value))


def masked_line(
    line_number: int, line: bytes, data: dict[str, Any] | None, errors: Sequence[FieldError]
) -> QuarantineEntry:
    """The quarantine entry of a line that failed validation."""
    reasons = [error.as_dict() for error in errors]
    if data is not None:
        masked = mask_value(data)
        if len(orjson.dumps(masked)) <= MAX_STORED_CHARS:
            return QuarantineEntry(line_number, reasons, masked, None)
    text = line.decode("utf-8", errors="replace")
    # Redact before cutting, so a card number across the cut is still recognised.
    raw = redact_text(text)[:MAX_STORED_CHARS]
    return QuarantineEntry(line_number, reasons, None, raw)


async def store(conn: DbConnection, object_id: int, entries: Sequence[QuarantineEntry]) -> None:
    """Insert the entries of one object (inside the object's transaction)."""
    if not entries:
        return
    await conn.executemany(
        "INSERT INTO cardstream.quarantined_row (object_id, line_number, reasons, row_masked,"
        " raw_masked) VALUES ($1, $2, $3::jsonb, $4::jsonb, $5)",
        [
            (
                object_id,
                e.line_number,
                orjson.dumps(e.reasons).decode(),
                orjson.dumps(e.row_masked).decode() if e.row_masked is not None else None,
                e.raw_masked,
            )
            for e in entries
        ],
    )
