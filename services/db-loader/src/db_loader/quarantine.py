"""Rows that cannot be loaded: kept with their reasons, never with a card number.

A quarantined line may not come from our stream-writer, so it may carry anything, a PAN
included, in any field or field name; what is stored is the line with every card number
masked (the shared detector, :mod:`cardstream_shared.card_numbers`: 11 to 19 digits in any
script, with any separators, passing the Luhn check) and sensitive authentication fields
dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgspec

from cardstream_shared.field_errors import FieldError
from cardstream_shared.redaction import redact_data, redacted_record

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


def masked_line(
    line_number: int, line: bytes, data: dict[str, Any] | None, errors: Sequence[FieldError]
) -> QuarantineEntry:
    """The quarantine entry of a line that failed validation."""
    reasons = [error.as_dict() for error in errors]
    if data is not None:
        masked = redact_data(data)
        if len(msgspec.json.encode(masked)) <= MAX_STORED_CHARS:
            return QuarantineEntry(line_number, reasons, masked, None)
    return QuarantineEntry(line_number, reasons, None, redacted_record(line, MAX_STORED_CHARS))


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
                msgspec.json.encode(e.reasons).decode(),
                msgspec.json.encode(e.row_masked).decode() if e.row_masked is not None else None,
                e.raw_masked,
            )
            for e in entries
        ],
    )
