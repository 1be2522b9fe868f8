"""Reading request bodies within the size limit, and parsing them by media type."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import orjson
from fastapi import Request

from cardstream_shared.parsers import (
    FieldError,
    RawRecord,
    csv_header_ok,
    parse_csv,
    parse_json_array,
    parse_ndjson,
)
from ingest_api.problems import ProblemError

JSON = "application/json"
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/ndjson"})
CSV = "text/csv"
BATCH_TYPES = frozenset({JSON, CSV, *NDJSON_TYPES})
_NOT_AN_OBJECT = FieldError(None, "record must be a JSON object", "type_error")


def media_type(request: Request) -> str:
    """The request's media type without parameters, lower-cased."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


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


def parse_json_records(body: bytes) -> list[RawRecord]:
    """Records of a JSON array; orjson first, the shared parser for its error messages."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson refuses some inputs the standard library reads (integers beyond 64 bits):
        # the shared parser either reads them or explains what is wrong.
        return list(parse_json_array(body))
    if not isinstance(document, list):
        return list(parse_json_array(body))
    return [
        RawRecord(index=i, data=item)
        if isinstance(item, dict)
        else RawRecord(index=i, errors=[_NOT_AN_OBJECT])
        for i, item in enumerate(document)
    ]


def parse_csv_records(body: bytes) -> Iterator[RawRecord]:
    """Records of the published CSV; the header is required and must name Kaggle fields."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ProblemError(415, "unsupported-media-type", "CSV must be UTF-8") from None
    try:
        header = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error:
        header = []
    names = [name.strip().lstrip("\ufeff") for name in header]
    if not names or not csv_header_ok(names):
        raise ProblemError(
            422,
            "csv-header",
            "text/csv needs a header row naming the Kaggle fields (cc_num included) and no "
            "other column",
        )
    return parse_csv(io.StringIO(text, newline=""))


def parse_batch(body: bytes, kind: str) -> list[RawRecord]:
    """Records of a batch body of media type ``kind`` (one of ``BATCH_TYPES``)."""
    if kind == JSON:
        return parse_json_records(body)
    if kind == CSV:
        return list(parse_csv_records(body))
    return list(parse_ndjson(body.splitlines()))
