"""A cheaper encoding of ``PutRecords`` requests and answers for the aiobotocore client.

botocore serializes a request by walking the service model member by member and parses an
answer the same way: for a 500-record ``PutRecords`` call both cost more than the rest of
the producer (figures in docs/benchmarks.md). Both are plain JSON for the Kinesis ``json``
protocol: a body ``{"StreamName", "Records": [{"Data": <base64>, "PartitionKey"}]}`` and an
answer ``{"FailedRecordCount", "Records": [{"SequenceNumber", "ShardId"} | {"ErrorCode",
"ErrorMessage"}], ...}`` of strings and integers only. msgspec writes the body in one call
(it encodes ``bytes`` as base64, as botocore does blobs) and reads the answer in one.

Both go through botocore's public hooks: the answer through the session's response-parser
component (:data:`READERS`, given to ``cardstream_shared.aws.aio_client``), the request
through the client's events (:func:`install`); :func:`kinesis_client` opens the service's
client with both. Everything else (endpoint rules, signing, retries, errors, every other
operation) stays botocore's: only the body of a ``PutRecords`` request whose entries all
carry their ``Data`` as bytes, and the body of its successful answer, take the short path.
A unit test holds both equal to botocore's own results.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final

import msgspec

from cardstream_shared.aws import aio_client
from cardstream_shared.settings import ServiceSettings

_OUTPUT_SHAPE: Final = "PutRecordsOutput"
_ENCODER: Final = msgspec.json.Encoder()
# Where the records of a call wait between the two events (the call's own context dict).
_HELD: Final = "cardstream_put_records"


def hold_records(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """``before-parameter-build``: botocore serializes the first record only; the call's
    records wait in its context for :func:`write_records`."""
    records = params.get("Records")
    if isinstance(records, list) and records and _all_data_bytes(records):
        context[_HELD] = records
        params["Records"] = records[:1]


def write_records(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """``before-call``: the serialized body (built around the first record: target header,
    content type, any host prefix from the stream parameters) gets the whole list, encoded
    in one msgspec call. The service's client runs without parameter validation (the
    producer builds the parameters), so botocore would not have checked the others."""
    records = context.pop(_HELD, None)
    if records is not None:
        body = msgspec.json.decode(params["body"])
        body["Records"] = records
        params["body"] = _ENCODER.encode(body)


def _all_data_bytes(records: list[Any]) -> bool:
    """Whether every entry is a mapping with its ``Data`` as bytes. botocore also takes
    text there (and encodes it as UTF-8 first); msgspec would write text as it is. The
    other members of an entry (``PartitionKey``, ``ExplicitHashKey``) are strings, which
    both write alike."""
    for record in records:
        if type(record) is not dict or type(record.get("Data")) is not bytes:
            return False
    return True


def read_put_records(raw_body: bytes, shape: Any) -> dict[str, Any] | None:
    """A successful ``PutRecords`` answer as botocore reads it: it holds only strings and
    integers, which need no conversion. ``None`` (botocore reads it) if it is not a JSON
    object."""
    try:
        parsed = msgspec.json.decode(raw_body)
    except msgspec.DecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    return {name: parsed[name] for name in shape.members if name in parsed}


# The answers this module reads, for ``cardstream_shared.aws.aio_client(readers=...)``.
READERS: Final = {_OUTPUT_SHAPE: read_put_records}


def install(client: Any) -> None:
    """Make ``client`` (an aiobotocore Kinesis client) write ``PutRecords`` bodies in one
    call, through its own event hooks."""
    client.meta.events.register("before-parameter-build.kinesis.PutRecords", hold_records)
    client.meta.events.register("before-call.kinesis.PutRecords", write_records)


@contextlib.asynccontextmanager
async def kinesis_client(settings: ServiceSettings) -> AsyncIterator[Any]:
    """ingest-api's aiobotocore Kinesis client, taking both short paths of this module."""
    async with aio_client(
        "kinesis",
        settings,
        # The producer retries inside its own deadline (see kinesis_producer); botocore
        # retrying too would multiply attempts past that deadline.
        retries={"mode": "standard", "max_attempts": 1},
        # The producer builds the parameters, not callers; validating 500 entries per call
        # costs more CPU than the request's own serialization.
        parameter_validation=False,
        readers=READERS,
    ) as client:
        install(client)
        yield client
