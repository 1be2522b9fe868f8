"""ingest-api's PutRecords encoding gives the same requests and answers as botocore's own."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import botocore.session
import pytest
from aiobotocore.parsers import AioJSONParser
from aiobotocore.session import get_session
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st

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


@given(entries=_ENTRIES, stream=st.sampled_from(["s", "cardstream-transactions"]))
@settings(max_examples=80, deadline=None)
def test_put_records_requests_equal_botocore_requests(
    entries: list[dict[str, Any]], stream: str
) -> None:
    botocore_serializer = kinesis._serializer
    ours = kinesis_codec.PutRecordsSerializer(botocore_serializer)
    params = {"StreamName": stream, "Records": entries}
    expected = botocore_serializer.serialize_to_request(params, _model(kinesis, "PutRecords"))
    got = ours.serialize_to_request(params, _model(kinesis, "PutRecords"))
    assert json.loads(got.pop("body")) == json.loads(expected.pop("body"))
    assert got == expected


def test_other_operations_and_text_data_are_botocore_serialized() -> None:
    botocore_serializer = kinesis._serializer
    ours = kinesis_codec.PutRecordsSerializer(botocore_serializer)
    text_data = [{"Data": b"x", "PartitionKey": "k"}, {"Data": "text", "PartitionKey": "k"}]
    for operation, params in (
        ("DescribeStreamSummary", {"StreamName": "s"}),
        # botocore encodes text Data as UTF-8 first; the short path writes only bytes.
        ("PutRecords", {"StreamName": "s", "Records": text_data}),
    ):
        model = _model(kinesis, operation)
        assert ours.serialize_to_request(params, model) == botocore_serializer.serialize_to_request(
            params, model
        )


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
    ours = kinesis_codec.PutRecordsParserFactory().create_parser("json")
    assert asyncio.run(ours.parse(dict(response), shape)) == asyncio.run(
        AioJSONParser().parse(dict(response), shape)
    )


async def test_error_answers_and_other_operations_parse_as_botocore_parses_them() -> None:
    ours = kinesis_codec.PutRecordsParserFactory().create_parser("json")
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


async def test_install_replaces_the_serializer_and_the_parser_factory() -> None:
    session: Any = get_session()
    async with session.create_client("kinesis", **_CLIENT_ARGS) as client:
        kinesis_codec.install(client)
        assert isinstance(client._serializer, kinesis_codec.PutRecordsSerializer)
        assert isinstance(
            client._endpoint._response_parser_factory, kinesis_codec.PutRecordsParserFactory
        )
