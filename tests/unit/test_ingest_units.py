"""Pure logic of ingest-api: chunking, backoff, rate limiting, envelope bytes, echoed ids."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import random
import uuid
from typing import Annotated, Any

import msgspec
import pytest
from fastapi import APIRouter, Request, Security
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.responses import Response

from cardstream_shared.contract import StreamEnvelope, TransactionIn, kaggle_example
from cardstream_shared.pan import PanKeyring
from cardstream_shared.stream_records import EnvelopeWriter, new_ingest_ids
from cardstream_shared.transaction_input import Transaction, echoable_trans_num, read_transaction
from ingest_api.app import IngestApp
from ingest_api.auth import BearerAuth
from ingest_api.kinesis_producer import (
    KinesisProducer,
    OutgoingRecord,
    backoff_delay,
    chunk_records,
)
from ingest_api.metrics import IngestMetrics
from ingest_api.rate_limit import TokenBucketLimiter

pytestmark = pytest.mark.unit

MIB = 1024 * 1024


_RECORD = st.tuples(
    st.integers(min_value=1, max_value=2000) | st.integers(min_value=1, max_value=MIB - 1024),
    # Keys of up to 256 characters, up to 4 bytes each in UTF-8 (counted by Kinesis).
    st.just("k" * 64) | st.text(min_size=1, max_size=256),
)


@given(shapes=st.lists(_RECORD, max_size=1200))
@settings(max_examples=80, deadline=None)
def test_chunks_keep_order_and_respect_both_putrecords_limits(
    shapes: list[tuple[int, str]],
) -> None:
    records = [OutgoingRecord(b"x" * size, key) for size, key in shapes]
    chunks = chunk_records(records)
    assert [i for chunk in chunks for i in chunk] == list(range(len(records)))
    for chunk in chunks:
        assert 1 <= len(chunk) <= 500
        assert sum(records[i].size for i in chunk) <= 5 * MIB


def test_partition_keys_count_towards_the_five_mib() -> None:
    # The data alone fits in one call; with the keys (multi-byte characters) it does not.
    records = [OutgoingRecord(b"x" * (MIB - 100), "\u00e9" * 200) for _ in range(5)]
    chunks = chunk_records(records)
    assert [len(c) for c in chunks] == [4, 1]


def test_a_full_chunk_is_cut_at_500_records() -> None:
    records = [OutgoingRecord(b"{}", "k")] * 1001
    assert [len(c) for c in chunk_records(records)] == [500, 500, 1]


@given(attempt=st.integers(min_value=0, max_value=40), seed=st.integers())
def test_backoff_is_full_jitter_capped(attempt: int, seed: int) -> None:
    delay = backoff_delay(attempt, base_s=0.05, max_s=1.0, rng=random.Random(seed))
    assert 0.0 <= delay <= min(1.0, 0.05 * 2**attempt)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_the_burst_then_refills_per_client() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(rate_per_s=10, burst=20, max_clients=10, clock=clock)
    assert limiter.acquire("a", 15) == 0
    assert limiter.acquire("a", 10) == pytest.approx(0.5)
    assert limiter.acquire("b", 20) == 0
    clock.now += 0.5
    assert limiter.acquire("a", 10) == 0
    assert limiter.acquire("a", 21) == float("inf")
    assert TokenBucketLimiter.retry_after_header(0.2) == "1"
    assert TokenBucketLimiter.retry_after_header(2.1) == "3"


def test_token_bucket_forgets_the_least_recent_clients_beyond_its_bound() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(rate_per_s=1, burst=1, max_clients=2, clock=clock)
    assert limiter.acquire("a") == 0
    assert limiter.acquire("a") > 0
    limiter.acquire("b")
    limiter.acquire("c")
    # "a" was dropped and comes back with a full bucket.
    assert limiter.acquire("a") == 0


@given(
    client_id=st.text(min_size=1, max_size=40),
    amount=st.decimals(min_value=0, max_value=10_000, places=2),
    merchant=st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=50
    ).filter(lambda s: s.strip() == s and s),
    is_fraud=st.sampled_from([0, 1, None]),
)
@settings(max_examples=80, deadline=None)
def test_envelope_bytes_equal_the_contract_serialization(
    client_id: str, amount: object, merchant: str, is_fraud: int | None
) -> None:
    keyring = PanKeyring.from_secret_string(PanKeyring.new_secret_string(key=b"k" * 32))
    row = kaggle_example() | {"amt": str(amount), "merchant": merchant, "is_fraud": is_fraud}
    txn = TransactionIn.model_validate(row)
    card = keyring.tokenize(txn.cc_num)
    received = dt.datetime(2026, 11, 27, 6, 30, 1, 123456, tzinfo=dt.UTC)
    ingest_id = uuid.uuid4()
    expected = StreamEnvelope.from_transaction(
        txn, card, client_id=client_id, received_at=received, ingest_id=ingest_id
    ).to_json_bytes()
    writer = EnvelopeWriter(client_id=client_id, received_at=received)
    door = read_transaction(msgspec.json.encode(row))
    assert isinstance(door, Transaction)
    assert writer.to_json_bytes(door, card, ingest_id=ingest_id) == expected


@given(
    key=st.binary(min_size=32, max_size=200),
    pan=st.from_regex(r"[0-9]{11,19}", fullmatch=True),
)
def test_pan_tokens_are_hmac_sha256_of_the_pan(key: bytes, pan: str) -> None:
    keyring = PanKeyring.from_secret_string(PanKeyring.new_secret_string(key=key))
    token = keyring.tokenize(pan)
    assert token.token == hmac.new(key, pan.encode(), hashlib.sha256).hexdigest()
    assert token.last4 == pan[-4:]


@given(
    naive=st.datetimes(min_value=dt.datetime(1, 1, 1)),
    zone=st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=-5))]),
)
def test_timestamps_serialize_as_strftime_writes_them(
    naive: dt.datetime, zone: dt.timezone | None
) -> None:
    when = naive.replace(tzinfo=zone)
    row = kaggle_example() | {"trans_date_trans_time": when, "dob": "0001-01-01"}
    txn = TransactionIn.model_validate(row)
    dumped = msgspec.json.decode(txn.model_dump_json())["trans_date_trans_time"]
    assert dumped == when.strftime("%Y-%m-%d %H:%M:%S")


def test_ingest_ids_are_canonical_random_version_4_uuids() -> None:
    ids = [i.decode() for count in (1, 7, 500, 1492) for i in new_ingest_ids(count)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_envelopes_without_a_given_id_parse_as_the_contract() -> None:
    keyring = PanKeyring.from_secret_string(PanKeyring.new_secret_string())
    txn = read_transaction(msgspec.json.encode(kaggle_example()))
    assert isinstance(txn, Transaction)
    card = keyring.tokenize(txn.cc_num)
    writer = EnvelopeWriter(client_id="merchant-1", received_at=dt.datetime.now(dt.UTC))
    writer.reserve_ids(2)
    envelopes = [writer.to_json_bytes(txn, card) for _ in range(3)]  # two reserved, one not
    parsed = [StreamEnvelope.model_validate_json(data) for data in envelopes]
    assert [envelope.to_json_bytes() for envelope in parsed] == envelopes
    assert {envelope.ingest_id.version for envelope in parsed} == {4}
    assert len({envelope.ingest_id for envelope in parsed}) == 3


@pytest.mark.parametrize(
    ("value", "echoed"),
    [
        ("0b242abb623afc578575680df30655b9", "0b242abb623afc578575680df30655b9"),
        (12345, "12345"),
        ("4111111111111111", None),  # looks like a card number: never repeated
        ("has space", None),
        ("x" * 65, None),
        (None, None),
        (True, None),
    ],
)
def test_rejected_records_echo_only_safe_ids(value: object, echoed: str | None) -> None:
    assert echoable_trans_num({"trans_num": value}) == echoed


class GatedKinesis:
    """Answers PutRecords only when ``gate`` opens; records the size of each call."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.called = asyncio.Event()
        self.calls: list[int] = []

    async def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> Any:  # noqa: N803
        self.calls.append(len(Records))
        self.called.set()
        await self.gate.wait()
        return {
            "FailedRecordCount": 0,
            "Records": [
                {"ShardId": "shardId-000000000000", "SequenceNumber": str(n)}
                for n in range(len(Records))
            ],
        }


async def test_coalescing_gathers_while_kinesis_is_busy_then_sends_one_call() -> None:
    kinesis = GatedKinesis()
    producer = KinesisProducer(
        kinesis,
        "stream",
        metrics=IngestMetrics(),
        deadline_s=5,
        backoff_base_s=0.01,
        backoff_max_s=0.1,
        attempt_timeout_s=5,
        coalesce_window_s=0.001,
        coalesce_max_records=500,
        coalesce_max_in_flight=1,
    )
    first = asyncio.create_task(producer.put_record(OutgoingRecord(b"{}", "a")))
    await kinesis.called.wait()
    later = [
        asyncio.create_task(producer.put_record(OutgoingRecord(b"{}", str(n)))) for n in range(9)
    ]
    await asyncio.sleep(0.02)  # well past the window: the call in flight holds them back
    assert kinesis.calls == [1]
    kinesis.gate.set()
    receipts = await asyncio.gather(first, *later)
    assert all(receipt is not None for receipt in receipts)
    assert kinesis.calls == [1, 9]
    await producer.close()


def test_the_write_lane_refuses_a_route_it_would_serve_without_its_dependencies() -> None:
    # The lane calls an endpoint with the Request alone: a security dependency or a
    # parameter would be skipped on POSTs, so such a route is refused, never served.
    async def checked(
        request: Request,
        principal: Annotated[Any, Security(BearerAuth("transactions:write"))],
    ) -> Response:
        return Response()

    async def with_parameter(request: Request, limit: int) -> Response:
        return Response()

    async def plain(request: Request) -> Response:
        return Response()

    for endpoint, kwargs in (
        (checked, {}),
        (with_parameter, {}),
        (plain, {"dependencies": [Security(BearerAuth("transactions:write"))]}),
    ):
        router = APIRouter()
        router.post("/v1/transactions", **kwargs)(endpoint)
        with pytest.raises(ValueError, match="Request alone"):
            IngestApp().add_write_lane(router, IngestMetrics())
    router = APIRouter()
    router.post("/v1/transactions")(plain)
    router.get("/v1/transactions")(plain)
    with pytest.raises(ValueError, match="only POST"):
        IngestApp().add_write_lane(router, IngestMetrics())
    served = APIRouter()
    served.post("/v1/transactions")(plain)
    IngestApp().add_write_lane(served, IngestMetrics())
