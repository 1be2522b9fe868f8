"""Redaction of card numbers and credentials from anything written to logs.

A PAN is any run of 11 to 19 digits (optionally grouped by spaces or dashes) that passes
the Luhn check: the published sample data has card numbers of 11 to 19 digits. Longer digit
runs (Kinesis sequence numbers have 56) are not card numbers and are left alone.
"""

from __future__ import annotations

import logging
import re
from typing import Final

from cardstream_shared.pan import PAN_MAX_DIGITS, PAN_MIN_DIGITS, luhn_valid

REDACTED: Final = "[REDACTED]"

_PAN_CANDIDATE = re.compile(
    rf"(?<![\d])(?:\d[ -]?){{{PAN_MIN_DIGITS - 1},{PAN_MAX_DIGITS - 1}}}\d(?![\d])"
)
_AUTH_HEADER = re.compile(
    r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic)\s+)?[^\s\"',;}]+"
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def _mask_candidate(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = text.replace(" ", "").replace("-", "")
    # A run of zeros passes the Luhn check but is no card number: shard ids such as
    # shardId-000000000000 must stay readable in logs.
    if digits.strip("0") and PAN_MIN_DIGITS <= len(digits) <= PAN_MAX_DIGITS and luhn_valid(digits):
        return f"{REDACTED}{digits[-4:]}"
    return text


def redact_text(text: str) -> str:
    """Replace card numbers, Authorization header values and bearer tokens in ``text``."""
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    return _PAN_CANDIDATE.sub(_mask_candidate, text)


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
