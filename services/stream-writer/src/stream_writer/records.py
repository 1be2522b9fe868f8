"""Decoding stream records: a valid stream record becomes one NDJSON line, anything else a
quarantine entry with its reasons and its content redacted (it may hold a card number in clear).

Records are read through the shared door
(:func:`cardstream_shared.stream_records.read_stream_record`), the same the db-loader loads
landed lines with: what the writer lands in ``raw/`` is what the loader can load, and what
either refuses is refused for the same reasons.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

import msgspec

from cardstream_shared.redaction import redact_text, redacted_record
from cardstream_shared.stream_records import read_stream_record

# A quarantined record keeps this much of its (redacted) content: enough to diagnose it.
_QUARANTINE_EXCERPT_CHARS = 4096
# A quarantine reason names at most this many fields (an envelope has 28).
_MAX_REASONS: Final = 40


@dataclass(frozen=True, slots=True)
class Quarantined:
    """An undecodable record: where it was in the stream and why it was refused."""

    sequence_number: str
    partition_key: str
    reason: str
    excerpt: str
    arrived_at: dt.datetime

    def to_json_line(self) -> bytes:
        """One NDJSON line for the quarantine object."""
        return msgspec.json.encode(
            {
                "sequence_number": self.sequence_number,
                "partition_key": redact_text(self.partition_key),
                "reason": redact_text(self.reason),
                "excerpt": self.excerpt,
                "approximate_arrival": self.arrived_at.isoformat(),
            }
        )


def decode(
    data: bytes, sequence_number: str, partition_key: str, arrived_at: dt.datetime
) -> bytes | Quarantined:
    """The NDJSON line of a valid stream record, or why the record goes to quarantine."""
    outcome = read_stream_record(data)
    if not isinstance(outcome, list):
        # JSON strings cannot hold a raw line break: any in a valid record is whitespace
        # between tokens, and dropping it keeps the object one record per line.
        return data.translate(None, b"\r\n")
    reason = "not a valid StreamEnvelope: " + "; ".join(
        f"{error.field or 'record'}: {error.message}" for error in outcome[:_MAX_REASONS]
    )
    if len(outcome) > _MAX_REASONS:
        reason += f"; and {len(outcome) - _MAX_REASONS} more"
    excerpt = redacted_record(data, _QUARANTINE_EXCERPT_CHARS)
    return Quarantined(sequence_number, partition_key, reason, excerpt, arrived_at)
