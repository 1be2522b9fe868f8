"""A canned AWS answer for a botocore ``before-send`` hook.

A handler of ``before-send`` that returns a response ends the call there: the client parses
that answer exactly as it would parse the service's, with no network. Unit tests use it to
drive a real aiobotocore client through its own hooks.
"""

from __future__ import annotations

from aiobotocore.awsrequest import AioAWSResponse
from botocore.awsrequest import HTTPHeaders


class _RawBody:
    """The raw body of an HTTP answer, read as aiohttp's would be."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def read(self) -> bytes:
        return self._body


def canned_answer(url: str, body: bytes, status: int = 200) -> AioAWSResponse:
    """An answer to ``url`` with ``status`` and the JSON ``body``."""
    return AioAWSResponse(url, status, HTTPHeaders(), _RawBody(body))
