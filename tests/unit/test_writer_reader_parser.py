"""The direct GetRecords parser returns what botocore's generic parser returns."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import pytest
from botocore.parsers import create_parser
from botocore.session import get_session

from stream_writer.shard_reader import _ParserFactory

pytestmark = pytest.mark.unit


def _response(body: Mapping[str, object]) -> dict[str, object]:
    return {"body": json.dumps(body).encode(), "headers": {}, "status_code": 200}


@pytest.mark.parametrize("next_iterator", ["AAAA", None])
async def test_get_records_fast_path_matches_botocore(next_iterator: str | None) -> None:
    model = get_session().get_service_model("kinesis")
    body: dict[str, object] = {
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
    shape: Any = model.operation_model("GetRecords").output_shape
    expected = create_parser("json").parse(_response(body), shape)
    fast = await _ParserFactory().create_parser("json").parse(_response(body), shape)
    expected.pop("ResponseMetadata")
    fast.pop("ResponseMetadata")
    assert fast == expected


async def test_other_operations_keep_botocore_parsing() -> None:
    model = get_session().get_service_model("kinesis")
    body = {"ShardIterator": "AAAA"}
    shape = model.operation_model("GetShardIterator").output_shape
    fast = await _ParserFactory().create_parser("json").parse(_response(body), shape)
    assert fast["ShardIterator"] == "AAAA"
