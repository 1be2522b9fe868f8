"""Redaction of card numbers and credentials from anything written to logs or kept for
diagnosis (quarantined records).

Card numbers are what :func:`cardstream_shared.card_numbers.find_card_numbers` finds, in
whatever digits and with whatever separators they are written, glued to a word or not;
each is replaced by ``[REDACTED]`` and its last four digits (PCI DSS 3.4.1 allows those to
be shown). Longer digit runs (Kinesis sequence numbers have 56) are not card numbers and are
left alone, and so are the digits of a hexadecimal id between its letters where the id is a
field of its own (``HEX_ID_FIELDS`` in decoded JSON): there they are the id's.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

import msgspec

from cardstream_shared.card_numbers import HEX_ID_FIELDS, find_card_numbers
from cardstream_shared.contract import sensitive_fields

REDACTED: Final = "[REDACTED]"
_AUTH_HEADER = re.compile(
    r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic)\s+)?[^\s\"',;}]+"
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def mask_card_numbers(text: str, *, hex_id: bool = False) -> str:
    """``text`` with every card number replaced by ``[REDACTED]`` and its last four digits
    (``hex_id``: ``text`` is a hexadecimal id, read as ``find_card_numbers`` reads one)."""
    found = find_card_numbers(text, hex_id=hex_id)
    if not found:
        return text
    parts: list[str] = []
    position = 0
    for card in found:
        parts += (text[position : card.start], REDACTED, card.last4)
        position = card.end
    parts.append(text[position:])
    return "".join(parts)


def redact_text(text: str, *, hex_id: bool = False) -> str:
    """Replace card numbers, Authorization header values and bearer tokens in ``text``
    (``hex_id``: ``text`` is a hexadecimal id, read as ``find_card_numbers`` reads one)."""
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    return mask_card_numbers(text, hex_id=hex_id)


def redact_data(value: Any) -> Any:
    """``value`` (decoded JSON, a log record's extra fields) with card numbers masked in
    every text, number and field name (the text of a field of ``HEX_ID_FIELDS`` read as a
    hexadecimal id), and the values of sensitive authentication fields (CVV, PIN, track
    data: never kept, PCI DSS 3.3) replaced by ``[REDACTED]``."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        # No card number has more than 19 digits (and str() refuses huge integers).
        if not -(10**19) < value < 10**19:
            return value
        text = str(value)
        masked = mask_card_numbers(text)
        return value if masked == text else masked
    if isinstance(value, dict):
        sensitive = set(sensitive_fields(value.keys()))
        return {
            redact_text(str(key)): _redacted_value(str(key), item, sensitive)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_data(item) for item in value]
    return redact_text(str(value))


def _redacted_value(key: str, value: Any, sensitive: set[str]) -> Any:
    if key in sensitive:
        return REDACTED
    if key in HEX_ID_FIELDS and isinstance(value, str):
        return redact_text(value, hex_id=True)
    return redact_data(value)


# A JSON escape of a character other than a surrogate: written out in text that is not
# JSON, so that a card number written with escapes is seen as the digits it is.
_ESCAPE: Final = re.compile(r'\\(?:u(?![dD][89abAB])([0-9a-fA-F]{4})|([bfnrt/\\"]))')
_SHORT_ESCAPES: Final = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescaped(match: re.Match[str]) -> str:
    code, short = match.groups()
    return chr(int(code, 16)) if code else _SHORT_ESCAPES.get(short, short)


def redacted_record(data: bytes, limit: int) -> str:
    """A record's bytes as text for diagnosis, at most ``limit`` characters, with card
    numbers and credentials redacted: JSON is decoded, redacted value by value
    (:func:`redact_data`) and written again; anything else is redacted as text, its JSON
    escapes written out first."""
    try:
        decoded = msgspec.json.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        text = data.decode("utf-8", errors="replace")
        # Masked before it is cut, so that a card number across the cut is still recognised.
        return redact_text(_ESCAPE.sub(_unescaped, text))[:limit]
    return msgspec.json.encode(redact_data(decoded)).decode()[:limit]


class RedactingFilter(logging.Filter):
    """Logging filter that redacts the rendered message and any exception text.

    Installed on every handler by :func:`cardstream_shared.json_logging.configure_logging`,
    so a PAN that reaches a log call by mistake is still never written.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message or record.args:
            record.msg = redacted
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True
