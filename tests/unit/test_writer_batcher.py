"""Batching by size, count and age; object keys; record decoding and quarantine."""

from __future__ import annotations

import datetime as dt
import gzip
import uuid

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardstream_shared.contract import StreamEnvelope, TransactionIn, kaggle_example
from cardstream_shared.pan import PanKeyring
from stream_writer.batcher import Batch, Batcher, Thresholds
from stream_writer.records import Quarantined, decode
from stream_writer.s3_sink import ndjson_gzip, quarantine_key, raw_key

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _line(size: int) -> bytes:
    return b"x" * size


def test_count_trigger_closes_batch_at_max_records() -> None:
    batcher = Batcher(Thresholds(max_bytes=10_000, max_records=3, max_age_s=60))
    closed = [batcher.offer(_line(10), str(seq), T0) for seq in range(1, 8)]
    flat = [item for batches in closed for item in batches]
    assert [trigger for _, trigger in flat] == ["records", "records"]
    assert [(b.first_sequence, b.last_sequence, b.record_count) for b, _ in flat] == [
        ("1", "3", 3),
        ("4", "6", 3),
    ]
    assert batcher.batch.first_sequence == "7"


def test_size_trigger_never_lets_an_object_exceed_the_limit() -> None:
    batcher = Batcher(Thresholds(max_bytes=100, max_records=1000, max_age_s=60))
    assert batcher.offer(_line(60), "1", T0) == []
    [(batch, trigger)] = batcher.offer(_line(60), "2", T0)
    assert trigger == "bytes"
    assert (batch.first_sequence, batch.last_sequence, batch.payload_bytes) == ("1", "1", 61)


def test_a_record_larger_than_the_limit_is_a_batch_of_its_own() -> None:
    batcher = Batcher(Thresholds(max_bytes=100, max_records=1000, max_age_s=60))
    [(batch, trigger)] = batcher.offer(_line(500), "1", T0)
    assert (trigger, batch.record_count) == ("bytes", 1)


def test_age_deadline_runs_from_the_oldest_arrival() -> None:
    batcher = Batcher(Thresholds(max_bytes=10_000, max_records=1000, max_age_s=2.0))
    assert batcher.deadline() is None
    now_wall = dt.datetime.now(dt.UTC)
    # A record that waited 1.5 s in Kinesis before we read it has 0.5 s left.
    batcher.offer(_line(10), "1", now_wall - dt.timedelta(seconds=1.5), now=100.0)
    assert batcher.deadline(now=100.0, now_wall=now_wall) == pytest.approx(100.5)
    # A record read at once waits the full age (from when it was buffered).
    fresh = Batcher(Thresholds(max_bytes=10_000, max_records=1000, max_age_s=2.0))
    fresh.offer(_line(10), "1", now_wall, now=100.0)
    assert fresh.deadline(now=100.0, now_wall=now_wall) == pytest.approx(102.0)


def test_quarantined_records_are_kept_apart_but_move_the_checkpoint() -> None:
    batcher = Batcher(Thresholds(max_bytes=10_000, max_records=1000, max_age_s=60))
    bad = Quarantined("2", "pk", "not JSON", "junk", T0)
    batcher.offer(_line(10), "1", T0)
    batcher.offer(bad, "2", T0)
    batcher.offer(_line(10), "3", T0)
    batch = batcher.take()
    assert (batch.first_good_sequence, batch.last_good_sequence) == ("1", "3")
    assert (batch.first_bad_sequence, batch.last_bad_sequence) == ("2", "2")
    assert batch.last_sequence == "3"
    assert batch.record_count == 2


@given(
    sizes=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=200),
    max_bytes=st.integers(min_value=50, max_value=2000),
    max_records=st.integers(min_value=1, max_value=50),
)
def test_every_record_lands_once_in_order_within_limits(
    sizes: list[int], max_bytes: int, max_records: int
) -> None:
    batcher = Batcher(Thresholds(max_bytes=max_bytes, max_records=max_records, max_age_s=60))
    batches: list[Batch] = []
    for seq, size in enumerate(sizes, start=1):
        batches.extend(batch for batch, _ in batcher.offer(_line(size), str(seq), T0))
    if not batcher.batch.empty:
        batches.append(batcher.take())
    sequences: list[int] = []
    for batch in batches:
        assert 1 <= batch.record_count <= max_records
        assert batch.payload_bytes <= max_bytes or batch.record_count == 1
        assert batch.first_sequence is not None
        assert batch.last_sequence is not None
        sequences.extend(range(int(batch.first_sequence), int(batch.last_sequence) + 1))
    assert sequences == list(range(1, len(sizes) + 1))


def test_object_keys_follow_the_team_contract() -> None:
    at = dt.datetime(2026, 3, 4, 23, 59, 59, tzinfo=dt.UTC)
    assert (
        raw_key("shardId-000000000001", "49590", "49599", at)
        == "raw/dt=2026-03-04/hour=23/shardId-000000000001-49590-49599.jsonl.gz"
    )
    assert quarantine_key("shardId-000000000001", "7", "7", at).startswith(
        "quarantine/dt=2026-03-04/hour=23/"
    )
    # The partition comes from the UTC flush time, whatever the caller's zone.
    local = at.astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert raw_key("s", "1", "2", local) == raw_key("s", "1", "2", at)


def test_objects_are_gzip_ndjson() -> None:
    body = ndjson_gzip([b'{"a":1}', b'{"a":2}'], level=3)
    assert gzip.decompress(body) == b'{"a":1}\n{"a":2}\n'


PAN = "4111111111111111"


def _envelope() -> bytes:
    txn = TransactionIn.model_validate({**kaggle_example(), "cc_num": PAN})
    ring = PanKeyring({"t": b"k" * 32}, "t")
    return StreamEnvelope.from_transaction(
        txn, ring.tokenize(PAN), client_id="c", received_at=T0, ingest_id=uuid.uuid4()
    ).to_json_bytes()


def test_valid_envelopes_pass_unchanged() -> None:
    data = _envelope()
    assert decode(data, "1", "pk", T0) == data


def test_pretty_printed_envelope_becomes_one_line() -> None:
    pretty = msgspec.json.format(_envelope(), indent=2)
    line = decode(pretty, "1", "pk", T0)
    assert isinstance(line, bytes)
    assert b"\n" not in line
    assert msgspec.json.decode(line) == msgspec.json.decode(pretty)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe not json", "Invalid JSON"),
        (b"[1, 2]", "Input should be an object"),
        (b'{"trans_num": "x"}', "merchant: Field required"),
        (msgspec.json.encode(kaggle_example()), "cc_num: unknown field"),
    ],
)
def test_undecodable_records_are_quarantined_with_a_reason(data: bytes, reason: str) -> None:
    item = decode(data, "9", "pk", T0)
    assert isinstance(item, Quarantined)
    assert reason in item.reason
    assert item.sequence_number == "9"


def test_a_raw_transaction_with_a_pan_is_quarantined_without_the_pan() -> None:
    envelope = msgspec.json.decode(_envelope())
    data = msgspec.json.encode({**envelope, "cc_num": PAN})
    item = decode(data, "3", PAN, T0)
    assert isinstance(item, Quarantined)
    line = item.to_json_line()
    assert PAN.encode() not in line
    assert b"cc_num" in line


def test_wrong_schema_version_and_bad_token_are_refused() -> None:
    envelope = msgspec.json.decode(_envelope())
    for change in ({"schema_version": 2}, {"card_token": "ABC"}):
        item = decode(msgspec.json.encode({**envelope, **change}), "1", "pk", T0)
        assert isinstance(item, Quarantined)
