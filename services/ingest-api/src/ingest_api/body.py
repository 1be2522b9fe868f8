"""Reading request bodies within the size limit, and parsing them by media type."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Final

import msgspec
import orjson
from fastapi import Request

from cardstream_shared.canonical_transactions import (
    canonical_transaction,
    canonical_transaction_array,
)
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


_JSON_ARRAY: Final = msgspec.json.Decoder(list[msgspec.Raw])


def _json_record(index: int, raw: bytes) -> RawRecord:
    """One element of a JSON array: canonical and valid already, or a mapping to validate."""
    txn = canonical_transaction(raw)
    if txn is not None:
        return RawRecord(index=index, canonical=txn)
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson refuses some inputs the standard library reads (integers beyond 64 bits):
        # the shared parser either reads them or explains what is wrong.
        record = next(parse_json_array(b"[" + raw + b"]"))
        record.index = index
        return record
    if isinstance(item, dict):
        return RawRecord(index=index, data=item)
    return RawRecord(index=index, errors=[_NOT_AN_OBJECT])


def parse_json_records(body: bytes) -> list[RawRecord]:
    """Records of a JSON array. An array of canonical records is read in one call; any
    other is split without reading its elements, and each is tried on the canonical fast
    path, then read for the contract. A body that is not a JSON array goes to the shared
    parser, whose errors say what is wrong with it."""
    txns = canonical_transaction_array(body)
    if txns is not None and all(txn is not None for txn in txns):
        return [RawRecord(index=index, canonical=txn) for index, txn in enumerate(txns)]
    try:
        elements = _JSON_ARRAY.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return list(parse_json_array(body))
    return [_json_record(i, bytes(element)) for i, element in enumerate(elements)]


def parse_ndjson_records(body: bytes) -> list[RawRecord]:
    """Records of newline-delimited JSON (blank lines skipped), canonical ones first."""
    records: list[RawRecord] = []
    for line in body.splitlines():
        if not line.strip():
            continue
        txn = canonical_transaction(line)
        if txn is not None:
            records.append(RawRecord(index=len(records), canonical=txn))
            continue
        record = next(parse_ndjson([line]))
        record.index = len(records)
        records.append(record)
    return records


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
    return parse_ndjson_records(body)
