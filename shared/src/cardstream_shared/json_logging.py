"""Structured JSON logging, one object per line, with card numbers and tokens redacted."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, Final

from cardstream_shared.redaction import RedactingFilter, redact_data, redact_text

# Attributes every LogRecord has; anything else was passed through ``extra=`` and is emitted.
_STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object; the whole line is redacted as a last defence."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        # Text values are redacted before JSON escapes the separators a card number may be
        # written with (a tab becomes \t), and characters are written as themselves (not as
        # \u escapes) so that the whole line can be redacted again as a last defence.
        line = json.dumps(
            redact_data(payload), default=str, separators=(",", ":"), ensure_ascii=False
        )
        return redact_text(line)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send JSON lines to stderr for ``service``; replaces any handlers already installed."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Access logs carry URLs and client addresses only; uvicorn's own handlers would bypass ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "aiobotocore", "botocore"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("botocore").setLevel(max(root.level, logging.WARNING))
    logging.getLogger("aiobotocore").setLevel(max(root.level, logging.WARNING))
