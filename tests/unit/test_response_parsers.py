"""What ``cardstream_shared.response_parsers`` needs of aiobotocore and botocore.

The readers take over one method of botocore's JSON parser (``_handle_json_body``: the raw
body and the output shape of an answer), in the parser that the client's response-parser
factory makes for the service's protocol. botocore does not promise to keep that method,
which is why aiobotocore is pinned exactly; when a raised pin changes what the readers rely
on, one of these tests names it. Otherwise the readers could stop running without an error
(answers read as before, only slower) or break every call.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiobotocore.parsers import AioJSONParser
from aiobotocore.session import get_session
from botocore.session import get_session as botocore_session
from canned_aws import canned_answer

from cardstream_shared.response_parsers import ReadingParserFactory, register_readers

pytestmark = pytest.mark.unit

_SUMMARY = {
    "StreamDescriptionSummary": {
        "StreamName": "s",
        "StreamARN": "arn:aws:kinesis:us-east-1:123456789012:stream/s",
        "StreamStatus": "ACTIVE",
        "RetentionPeriodHours": 24,
        "StreamCreationTimestamp": 1764224000.5,
        "EnhancedMonitoring": [],
        "OpenShardCount": 2,
    }
}
_BODY = json.dumps(_SUMMARY).encode()


def _output_shape(operation: str) -> Any:
    return botocore_session().get_service_model("kinesis").operation_model(operation).output_shape


def _answer(body: bytes, status: int = 200) -> dict[str, Any]:
    return {"body": body, "headers": {"x-amzn-requestid": "r1"}, "status_code": status}


def test_kinesis_answers_are_read_by_the_json_protocol_parser() -> None:
    # The readers live in the "json" parser; a service model that preferred another
    # protocol would read every answer without them.
    assert botocore_session().get_service_model("kinesis").resolved_protocol == "json"


async def test_a_successful_answer_reaches_its_reader_as_raw_body_and_output_shape() -> None:
    seen: list[tuple[bytes, Any]] = []

    def reader(raw_body: bytes, shape: Any) -> dict[str, Any]:
        seen.append((raw_body, shape))
        return {"Read": True}

    shape = _output_shape("DescribeStreamSummary")
    parser = ReadingParserFactory({shape.name: reader}).create_parser("json")
    parsed = await parser.parse(_answer(_BODY), shape)
    assert seen == [(_BODY, shape)]
    assert parsed == {"Read": True, "ResponseMetadata": parsed["ResponseMetadata"]}
    assert parsed["ResponseMetadata"]["RequestId"] == "r1"


async def test_declined_and_error_answers_are_read_by_botocore() -> None:
    calls: list[bytes] = []

    def declining(raw_body: bytes, shape: Any) -> None:
        calls.append(raw_body)

    shape = _output_shape("DescribeStreamSummary")
    parser = ReadingParserFactory({shape.name: declining}).create_parser("json")
    assert await parser.parse(_answer(_BODY), shape) == await AioJSONParser().parse(
        _answer(_BODY), shape
    )
    assert calls == [_BODY]
    error = _answer(b'{"__type": "ResourceNotFoundException", "message": "no"}', 400)
    assert await parser.parse(dict(error), shape) == await AioJSONParser().parse(dict(error), shape)
    assert calls == [_BODY]


async def test_the_factory_defaults_reach_the_reading_parser() -> None:
    # A session sets the parsers' timestamp and blob readers through the factory's defaults.
    stamps: list[Any] = []

    def timestamp_parser(value: Any) -> str:
        stamps.append(value)
        return "parsed"

    factory = ReadingParserFactory({})
    factory.set_parser_defaults(timestamp_parser=timestamp_parser)
    shape = _output_shape("DescribeStreamSummary")
    parsed = await factory.create_parser("json").parse(_answer(_BODY), shape)
    assert stamps == [1764224000.5]
    assert parsed["StreamDescriptionSummary"]["StreamCreationTimestamp"] == "parsed"


async def test_the_clients_of_a_session_with_readers_use_them() -> None:
    read: list[bytes] = []

    def reader(raw_body: bytes, shape: Any) -> dict[str, Any]:
        read.append(raw_body)
        return {"Read": True}

    def reply(request: Any, **_: Any) -> Any:
        return canned_answer(request.url, _BODY)

    session: Any = get_session()
    register_readers(session, {"DescribeStreamSummaryOutput": reader})
    async with session.create_client(
        "kinesis",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="unit",
        aws_secret_access_key="unit",
    ) as client:
        client.meta.events.register("before-send.kinesis.DescribeStreamSummary", reply)
        parsed = await client.describe_stream_summary(StreamName="s")
    assert read == [_BODY]
    assert parsed["Read"] is True
