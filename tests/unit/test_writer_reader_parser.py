"""The direct GetRecords reader returns what botocore's generic parser returns, and the
writer's Kinesis client uses it."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import pytest
from botocore.parsers import create_parser
from botocore.session import get_session
from canned_aws import canned_answer

from cardstream_shared.response_parsers import ReadingParserFactory
from cardstream_shared.settings import ServiceSettings
from stream_writer import shard_reader
from stream_writer.shard_reader import read_get_records

pytestmark = pytest.mark.unit

_FACTORY = ReadingParserFactory({"GetRecordsOutput": read_get_records})


def _response(body: Mapping[str, object]) -> dict[str, object]:
    return {"body": json.dumps(body).encode(), "headers": {}, "status_code": 200}


def _get_records_answer(next_iterator: str | None) -> dict[str, object]:
    return {
        "Records": [
            {
                "SequenceNumber": "4959000000000000000001",
                "ApproximateArrivalTimestamp": 1764224000.123,
                "Data": base64.b64encode(b'{"a": 1}').decode(),
                "PartitionKey": "card",
                "EncryptionType": "KMS",
            },
            {
                "SequenceNumber": "4959000000000000000002",
                "ApproximateArrivalTimestamp": 1764224001,
                "Data": "",
                "PartitionKey": "other",
            },
        ],
        "NextShardIterator": next_iterator,
        "MillisBehindLatest": 42,
    }


@pytest.mark.parametrize("next_iterator", ["AAAA", None])
async def test_get_records_fast_path_matches_botocore(next_iterator: str | None) -> None:
    model = get_session().get_service_model("kinesis")
    body = _get_records_answer(next_iterator)
    shape: Any = model.operation_model("GetRecords").output_shape
    expected = create_parser("json").parse(_response(body), shape)
    fast = await _FACTORY.create_parser("json").parse(_response(body), shape)
    expected.pop("ResponseMetadata")
    fast.pop("ResponseMetadata")
    assert fast == expected


async def test_other_operations_keep_botocore_parsing() -> None:
    model = get_session().get_service_model("kinesis")
    body = {"ShardIterator": "AAAA"}
    shape = model.operation_model("GetShardIterator").output_shape
    fast = await _FACTORY.create_parser("json").parse(_response(body), shape)
    assert fast["ShardIterator"] == "AAAA"


async def test_the_writer_client_reads_get_records_on_the_direct_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The client the writer runs; a before-send hook stands in for Kinesis (no network).
    body = _get_records_answer("AAAA")
    read: list[bytes] = []

    def counted_read(raw_body: bytes, shape: Any) -> dict[str, Any]:
        read.append(raw_body)
        return read_get_records(raw_body, shape)

    def reply(request: Any, **_: Any) -> Any:
        return canned_answer(request.url, json.dumps(body).encode())

    monkeypatch.setattr(shard_reader, "read_get_records", counted_read)
    settings = ServiceSettings(environment="test", aws_endpoint_url="http://127.0.0.1:9")
    async with shard_reader.kinesis_client(settings) as client:
        client.meta.events.register("before-send.kinesis.GetRecords", reply)
        got = await client.get_records(ShardIterator="AAAA")
    assert len(read) == 1
    shape = get_session().get_service_model("kinesis").operation_model("GetRecords").output_shape
    expected = create_parser("json").parse(_response(body), shape)
    got.pop("ResponseMetadata")
    expected.pop("ResponseMetadata")
    assert got == expected
