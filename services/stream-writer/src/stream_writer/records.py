"""Decoding stream records: a ``StreamEnvelope`` becomes one NDJSON line, anything else a
quarantine entry with its reason and its content redacted (it may hold a card number in clear).

Two levels of checking, chosen by ``WRITER_VALIDATION``:

* ``structure`` (default): a JSON object with exactly the envelope's fields, schema version 1
  and a well-formed card token. This catches what cannot be loaded at all (not JSON, another
  producer's records, a raw transaction with ``cc_num``) at about 2 µs per record.
* ``full``: the pydantic model itself, about 40 µs per record (measured, see
  docs/stream-writer.md), which alone would hold the writer near 20,000 records per
  CPU-second. The db-loader validates every row again before loading, and quarantines the
  rows it refuses with their reasons, so value checks are not lost with ``structure``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson
from pydantic import ValidationError

from cardstream_shared.contract import StreamEnvelope
from cardstream_shared.redaction import redact_text

Validation = Literal["structure", "full"]

_FIELDS: Final = frozenset(StreamEnvelope.model_fields)
_REQUIRED: Final = frozenset(
    name for name, info in StreamEnvelope.model_fields.items() if info.is_required()
)
_CARD_TOKEN: Final = re.compile(r"[0-9a-f]{64}")

# A quarantined record keeps this much of its (redacted) content: enough to diagnose it.
_QUARANTINE_EXCERPT_CHARS = 4096


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
        return orjson.dumps(
            {
                "sequence_number": self.sequence_number,
                "partition_key": redact_text(self.partition_key),
                "reason": redact_text(self.reason),
                "excerpt": self.excerpt,
                "approximate_arrival": self.arrived_at.isoformat(),
            }
        )


def _reason(error: ValidationError) -> str:
    # Field locations and messages only: input values could be personal data or a PAN.
    parts = []
    for item in error.errors(include_input=False, include_url=False)[:10]:
        location = ".".join(str(part) for part in item["loc"]) or "record"
        parts.append(f"{location}: {item['msg']}")
    return "not a valid StreamEnvelope: " + "; ".join(parts)


def _names(names: set[str]) -> str:
    return redact_text(", ".join(sorted(names))[:200])


def structure_problem(data: bytes) -> str | None:
    """Why ``data`` is not an envelope-shaped JSON object, or None when it is."""
    try:
        value: Any = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        return f"not JSON: {error.msg}"
    if not isinstance(value, dict):
        return "not a JSON object"
    keys = value.keys()
    unknown = keys - _FIELDS
    if unknown:
        return f"not a StreamEnvelope: unknown field(s) {_names(set(unknown))}"
    missing = _REQUIRED - keys
    if missing:
        return f"not a StreamEnvelope: missing field(s) {_names(set(missing))}"
    if value.get("schema_version", 1) != 1:
        return "not a StreamEnvelope: unsupported schema_version"
    token = value["card_token"]
    if not isinstance(token, str) or not _CARD_TOKEN.fullmatch(token):
        return "not a StreamEnvelope: card_token is not 64 lower-case hex digits"
    return None


def decode(
    data: bytes,
    sequence_number: str,
    partition_key: str,
    arrived_at: dt.datetime,
    validation: Validation = "structure",
) -> bytes | Quarantined:
    """The NDJSON line for an envelope, or why the record goes to quarantine."""
    reason: str | None
    if validation == "full":
        try:
            StreamEnvelope.model_validate_json(data)
        except ValidationError as error:
            reason = _reason(error)
        else:
            reason = None
    else:
        reason = structure_problem(data)
    if reason is None:
        # ingest-api writes compact JSON; anything with a line break is re-serialized so the
        # object stays one record per line.
        if b"\n" in data or b"\r" in data:
            return orjson.dumps(orjson.loads(data))
        return data
    text = data.decode("utf-8", errors="replace")[:_QUARANTINE_EXCERPT_CHARS]
    return Quarantined(sequence_number, partition_key, reason, redact_text(text), arrived_at)
