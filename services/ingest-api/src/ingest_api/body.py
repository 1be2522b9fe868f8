"""Request bodies: their media type, and reading them within the size limit.

What a body says is read by the shared door (:mod:`cardstream_shared.transaction_input`);
this module only decides which reading applies and refuses, before any byte is read, a body
whose type, character set or content coding the service does not take.
"""

from __future__ import annotations

from typing import Final

from fastapi import Request

from cardstream_shared.transaction_input import BatchFormat
from ingest_api.problems import ProblemError

JSON: Final = "application/json"
CSV: Final = "text/csv"
BATCH_FORMATS: Final[dict[str, BatchFormat]] = {
    JSON: "json",
    "application/x-ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/ndjson": "ndjson",
    CSV: "csv",
}


def media_type(request: Request) -> str:
    """The request's media type without parameters, lower-cased.

    A ``charset`` other than UTF-8 (JSON has no other, RFC 8259 8.1; the CSV is read as
    UTF-8) and any content coding (no compressed body is accepted, so no decompression can
    be made to expand) are refused with 415 here, before the body is read.
    """
    header = request.headers.get("content-type", "")
    kind, _, parameters = header.partition(";")
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise ProblemError(415, "unsupported-media-type", "bodies must be UTF-8")
    coding = request.headers.get("content-encoding", "identity").strip().lower()
    if coding not in ("", "identity"):
        raise ProblemError(
            415,
            "unsupported-media-type",
            "compressed bodies are not accepted; send the body without Content-Encoding",
            headers={"Accept-Encoding": "identity"},
        )
    return kind.strip().lower()


def _too_large(limit: int) -> ProblemError:
    return ProblemError(413, "payload-too-large", f"the request body exceeds {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ProblemError(400, "bad-request", "Content-Length is not a number")
        if int(declared) > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
