"""Retry-After as RFC 9110 allows it: delay-seconds or an HTTP-date."""

from __future__ import annotations

import datetime as dt

import pytest

from cardstream.replay import retry_after_seconds

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 27, 8, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 0 ", 0.0),
        ("Fri, 27 Nov 2026 08:00:30 GMT", 30.0),
        ("Fri, 27 Nov 2026 07:59:00 GMT", 0.0),
        ("soon", None),
        ("-1", None),
        (None, None),
    ],
)
def test_retry_after(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, now=NOW) == seconds
