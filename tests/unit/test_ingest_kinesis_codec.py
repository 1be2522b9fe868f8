"""ingest-api's PutRecords encoding gives the same requests and answers as botocore's own."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import botocore.session
import pytest
from aiobotocore.awsrequest import AioAWSResponse
from aiobotocore.parsers import AioJSONParser
from botocore.config import Config
from canned_aws import canned_answer
from hypothesis import given, settings
from hypothesis import strategies as st

from cardstream_shared.response_parsers import ReadingParserFactory
from cardstream_shared.settings import ServiceSettings
from ingest_api import kinesis_codec

pytestmark = pytest.mark.unit

_TEXT = st.text(min_size=1, max_size=40)
_ENTRIES = st.lists(
    st.fixed_dictionaries(
        {"Data": st.binary(max_size=300), "PartitionKey": _TEXT},
        optional={"ExplicitHashKey": st.integers(0, 2**128 - 1).map(str)},
    ),
    max_size=40,
)


_CLIENT_ARGS: dict[str, Any] = {
    "region_name": "us-east-1",
    "endpoint_url": "http://127.0.0.1:9",
    "aws_access_key_id": "unit",
    "aws_secret_access_key": "unit",
}
# aiobotocore builds its clients' serializers with botocore's own factory, so the synchronous
# client's serializer and service model are the ones the service's client uses.
# Without parameter validation, as ingest-api's client runs (runtime.open_runtime).
kinesis: Any = botocore.session.get_session().create_client(
    "kinesis", config=Config(parameter_validation=False), **_CLIENT_ARGS
)


def _model(client: Any, operation: str) -> Any:
    return client.meta.service_model.operation_model(operation)


def _short_path_request(params: dict[str, Any]) -> dict[str, Any]:
    """The request dict as the service's client builds it: the two event handlers around
    botocore's own serializer, in the order botocore calls them."""
    model = _model(kinesis, "PutRecords")
    params, context = dict(params), dict[str, Any]()
    kinesis_codec.hold_records(params=params, model=model, context=context)
    request = kinesis._serializer.serialize_to_request(params, model)
    kinesis_codec.write_records(params=request, model=model, context=context)
    assert context == {}
    return dict(request)


@given(entries=_ENTRIES, stream=st.sampled_from(["s", "cardstream-transactions"]))
@settings(max_examples=80, deadline=None)
def test_put_records_requests_equal_botocore_requests(
    entries: list[dict[str, Any]], stream: str
) -> None:
    params = {"StreamName": stream, "Records": entries}
    expected = kinesis._serializer.serialize_to_request(params, _model(kinesis, "PutRecords"))
    got = _short_path_request(params)
    assert json.loads(got.pop("body")) == json.loads(expected.pop("body"))
    assert got == expected


def test_text_data_is_botocore_serialized() -> None:
    # botocore encodes text Data as UTF-8 first; the short path writes only bytes.
    text_data = [{"Data": b"x", "PartitionKey": "k"}, {"Data": "text", "PartitionKey": "k"}]
    params = {"StreamName": "s", "Records": text_data}
    model = _model(kinesis, "PutRecords")
    assert _short_path_request(params) == kinesis._serializer.serialize_to_request(params, model)


_RESULT = st.one_of(
    st.fixed_dictionaries(
        {"SequenceNumber": st.from_regex(r"[0-9]{20,56}", fullmatch=True), "ShardId": _TEXT}
    ),
    st.fixed_dictionaries(
        {
            "ErrorCode": st.sampled_from(
                ["ProvisionedThroughputExceededException", "InternalFailure"]
            ),
            "ErrorMessage": _TEXT,
        }
    ),
)


@given(results=st.lists(_RESULT, max_size=40), encryption=st.sampled_from([None, "NONE", "KMS"]))
@settings(max_examples=80, deadline=None)
def test_put_records_answers_parse_as_botocore_parses_them(
    results: list[dict[str, Any]], encryption: str | None
) -> None:
    answer: dict[str, Any] = {
        "FailedRecordCount": sum("ErrorCode" in r for r in results),
        "Records": results,
    }
    if encryption:
        answer["EncryptionType"] = encryption
    response = {
        "body": json.dumps(answer).encode(),
        "headers": {"x-amzn-requestid": "r1"},
        "status_code": 200,
    }
    shape = _model(kinesis, "PutRecords").output_shape
    ours = ReadingParserFactory(kinesis_codec.READERS).create_parser("json")
    assert asyncio.run(ours.parse(dict(response), shape)) == asyncio.run(
        AioJSONParser().parse(dict(response), shape)
    )


async def test_error_answers_and_other_operations_parse_as_botocore_parses_them() -> None:
    ours = ReadingParserFactory(kinesis_codec.READERS).create_parser("json")
    throttled = {
        "body": b'{"__type": "ProvisionedThroughputExceededException", "message": "slow down"}',
        "headers": {},
        "status_code": 400,
    }
    summary = {
        "body": json.dumps(
            {"StreamDescriptionSummary": {"StreamName": "s", "StreamStatus": "ACTIVE"}}
        ).encode(),
        "headers": {},
        "status_code": 200,
    }
    for response, operation in ((throttled, "PutRecords"), (summary, "DescribeStreamSummary")):
        shape = _model(kinesis, operation).output_shape
        assert await ours.parse(dict(response), shape) == await AioJSONParser().parse(
            dict(response), shape
        )


async def test_the_service_client_takes_both_short_paths_through_botocore_hooks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The client ingest-api runs (runtime.open_runtime opens it so); a before-send hook stands
    # in for Kinesis (no network) and keeps what was sent.
    sent: list[bytes] = []
    read: list[bytes] = []
    answer = {
        "FailedRecordCount": 1,
        "Records": [
            {"SequenceNumber": "49590000000000000000000000001", "ShardId": "shardId-000000000000"},
            {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"},
        ],
    }

    def reply(request: Any, **_: Any) -> AioAWSResponse:
        sent.append(request.body)
        return canned_answer(request.url, json.dumps(answer).encode())

    def counted_read(raw_body: bytes, shape: Any) -> dict[str, Any] | None:
        read.append(raw_body)
        return kinesis_codec.read_put_records(raw_body, shape)

    monkeypatch.setitem(kinesis_codec.READERS, "PutRecordsOutput", counted_read)
    records = [{"Data": b"\x00\xff", "PartitionKey": "a"}, {"Data": b"{}", "PartitionKey": "b"}]
    settings = ServiceSettings(
        environment="test", aws_endpoint_url=str(_CLIENT_ARGS["endpoint_url"])
    )
    async with kinesis_codec.kinesis_client(settings) as client:
        client.meta.events.register("before-send.kinesis.PutRecords", reply)
        got = await client.put_records(StreamName="s", Records=records)
    # Written in one msgspec call (compact; botocore's own body has spaces after separators).
    assert sent == [
        b'{"StreamName":"s","Records":[{"Data":"AP8=","PartitionKey":"a"},'
        b'{"Data":"e30=","PartitionKey":"b"}]}'
    ]
    assert len(read) == 1  # the answer went through the short path
    got.pop("ResponseMetadata")
    assert got == answer
