"""What is wrong with a record, field by field, without ever repeating a value sent.

Both decoding doors (``transaction_input`` for what merchants send, ``stream_records`` for
what travels through the stream) answer a refused record with these: ingest-api puts them in
its problem documents, the stream-writer and the db-loader in their quarantine reasons.
A value may be a card number, so only field names (card numbers in them masked), messages
and types are kept.
"""

from __future__ import annotations

import msgspec
from pydantic import ValidationError

from cardstream_shared.redaction import mask_card_numbers


class FieldError(msgspec.Struct, frozen=True, gc=False):
    """One problem with one field (``field`` is None for a problem with the whole record)."""

    field: str | None
    message: str
    type: str = "value_error"

    def as_dict(self) -> dict[str, str | None]:
        """JSON form used in problem+json ``errors`` and quarantine reasons."""
        return {"field": self.field, "message": self.message, "type": self.type}


def record_error(message: str, kind: str) -> list[FieldError]:
    """The errors of a record refused as a whole."""
    return [FieldError(None, message, kind)]


def from_validation_error(error: ValidationError) -> list[FieldError]:
    """Field-level errors of a pydantic error, without the input values."""
    result = []
    for item in error.errors(include_input=False, include_url=False, include_context=False):
        loc = ".".join(str(part) for part in item["loc"]) or None
        message = item["msg"]
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        if item["type"] == "extra_forbidden" and loc is not None:
            # The sender named this field, maybe with a card number: masked as a value is.
            loc = mask_card_numbers(loc)
            message = "unknown field"
        result.append(FieldError(loc, message, item["type"]))
    return result
