"""db-loader logic without servers: notifications, object decoding, masking, batch dedupe."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import secrets
import zlib
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardstream_shared.contract import StreamEnvelope, TransactionIn, kaggle_example
from cardstream_shared.pan import PanKeyring
from cardstream_shared.redaction import redact_data
from db_loader.migrate import MissingSettingError, admin_url
from db_loader.object_reader import Limits, OverlongLine, UnreadableObjectError, decode_lines
from db_loader.rows import prepare, split_label, with_label
from db_loader.sqs_poller import PoisonMessageError, parse_message

pytestmark = pytest.mark.unit

LIMITS = Limits(max_object_bytes=1 << 20, max_decompressed_bytes=1 << 20, max_line_bytes=4096)
KEYRING = PanKeyring({"u1": secrets.token_bytes(32)}, "u1")


def s3_event(*keys: str, name: str = "ObjectCreated:Put") -> str:
    return json.dumps(
        {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": name,
                    "eventTime": "2026-11-27T06:00:00.000Z",
                    "s3": {
                        "bucket": {"name": "cardstream-landing"},
                        "object": {"key": key, "size": 10, "eTag": '"abc"'},
                    },
                }
                for key in keys
            ]
        }
    )


def test_test_event_names_no_object() -> None:
    body = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"})
    assert parse_message(body) == []


def test_several_records_with_url_encoded_keys() -> None:
    objects = parse_message(s3_event("raw/a+b%2Bc.jsonl.gz", "raw/dt%3D2026/x.jsonl.gz"))
    assert [o.key for o in objects] == ["raw/a b+c.jsonl.gz", "raw/dt=2026/x.jsonl.gz"]
    assert objects[0].etag == "abc"
    assert objects[0].event_time == dt.datetime(2026, 11, 27, 6, tzinfo=dt.UTC)


def test_sns_wrapped_notification_and_non_create_events() -> None:
    wrapped = json.dumps({"Type": "Notification", "Message": s3_event("raw/k.jsonl.gz")})
    assert [o.key for o in parse_message(wrapped)] == ["raw/k.jsonl.gz"]
    assert parse_message(s3_event("raw/k.jsonl.gz", name="ObjectRemoved:Delete")) == []


@pytest.mark.parametrize("body", ["{not json", "[1]", json.dumps({"Records": [{"s3": {}}]})])
def test_poison_bodies_are_refused(body: str) -> None:
    with pytest.raises(PoisonMessageError):
        parse_message(body)


def test_gzip_members_and_a_missing_final_newline() -> None:
    body = gzip.compress(b'{"a": 1}\n{"b": 2}\n') + gzip.compress(b'{"c": 3}')
    chunks = [body[i : i + 7] for i in range(0, len(body), 7)]
    lines = list(decode_lines(chunks, gzipped=True, limits=LIMITS))
    assert lines == [(1, b'{"a": 1}'), (2, b'{"b": 2}'), (3, b'{"c": 3}')]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (gzip.compress(b"x" * 2_000_000), "too_large"),
        (gzip.compress(b"{}\n")[:-6], "truncated"),
        (b"\x1f\x8bnot really gzip", "not_gzip"),
    ],
)
def test_unreadable_objects(body: bytes, reason: str) -> None:
    with pytest.raises(UnreadableObjectError) as caught:
        list(decode_lines([body], gzipped=True, limits=LIMITS))
    assert caught.value.reason == reason


@pytest.mark.parametrize("chunk_size", [7, 4096, 1 << 20])
def test_an_over_long_line_costs_only_itself(chunk_size: int) -> None:
    long = b"y" * 10_000
    body = gzip.compress(b'{"a": 1}\n' + long + b'\n{"b": 2}\n' + long + b"z\n\n" + long)
    chunks = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)]
    lines = list(decode_lines(chunks, gzipped=True, limits=LIMITS))
    excerpt = OverlongLine(b"y" * 4096, 4096)
    assert lines == [
        (1, b'{"a": 1}'),
        (2, excerpt),
        (3, b'{"b": 2}'),
        (4, excerpt),
        (5, b""),
        (6, excerpt),
    ]


def test_decompression_error_is_not_a_zlib_error() -> None:
    with pytest.raises(UnreadableObjectError):
        list(decode_lines([zlib.compress(b"abc")], gzipped=True, limits=LIMITS))


def test_masking_removes_card_numbers_and_sensitive_fields() -> None:
    masked = redact_data(
        {
            "cc_num": 4111111111111111,
            "note": "card 4111 1111 1111 1111 declined",
            "cvv": "123",
            "nested": [{"pan": "5500005555555559"}],
            "amt": 12.5,
            "unix_time": 1325376018,
        }
    )
    text = json.dumps(masked)
    for digits in ("4111111111111111", "4111 1111 1111 1111", "5500005555555559", "123"):
        assert digits not in text
    assert masked["unix_time"] == 1325376018
    assert masked["amt"] == 12.5


def envelope_line(trans_num: str, is_fraud: int | None, hour: int) -> tuple[int, bytes]:
    row = dict(kaggle_example(), trans_num=trans_num, is_fraud=is_fraud)
    txn = TransactionIn.model_validate(row)
    received = dt.datetime(2026, 11, 27, hour, tzinfo=dt.UTC)
    envelope = StreamEnvelope.from_transaction(
        txn, KEYRING.tokenize(txn.cc_num), client_id="c", received_at=received
    )
    return hour, envelope.to_json_bytes()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from([None, 0, 1])),
        min_size=1,
        max_size=12,
    )
)
def test_batch_keeps_one_fact_per_key_with_the_last_label(
    records: list[tuple[str, int | None]],
) -> None:
    lines = [envelope_line(key, label, hour) for hour, (key, label) in enumerate(records)]
    batch = prepare(lines)
    keys = {key for key, _ in records}
    assert batch.fact_count == len(keys)
    assert batch.duplicates_in_batch == len(records) - len(keys)
    stored = {row[0]: row[10] for row in csv.reader(batch.fact_records)}
    for key in keys:
        labels = [label for k, label in records if k == key and label is not None]
        assert stored[key] == (str(labels[-1]) if labels else "")
    # One customer, card, merchant and category: the same cardholder in every record.
    assert {table: len(rows) for table, rows in batch.dimensions.items()}["customer"] == 1


ENVELOPES = [json.loads(envelope_line(key, None, 1)[1]) for key in ("a", "b")]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(ENVELOPES),
    st.sampled_from([0, 1]),
    st.sampled_from(["2026-11-27T07:33:58.030833+00:00", "2026-11-28T00:00:00+00:00"]),
    st.sampled_from(["client,1", 'a "quoted" client', "multi\nline", "plain"]),
)
def test_a_fact_record_takes_another_label_without_changing_any_other_field(
    record: dict[str, Any], label: int, labelled_at: str, client_id: str
) -> None:
    line = json.dumps({**record, "client_id": client_id, "is_fraud": None}).encode()
    batch = prepare([(1, line)])
    (original,) = batch.fact_records
    changed = with_label(original, label, labelled_at)
    head, fraud, when, tail = split_label(changed)
    assert (fraud, when) == (label, labelled_at)
    before = split_label(original)
    assert (head, tail) == (before[0], before[3])
    assert before[1:3] == (None, None)


def test_migration_admin_url_is_made_of_the_libpq_variables_ecs_injects() -> None:
    env = {
        "PGHOST": "db.example",
        "PGPORT": "5433",
        "PGUSER": "master",
        "PGPASSWORD": "p@ss:/#?&=%x",
        "PGDATABASE": "postgres",
    }
    url = urlsplit(admin_url(None, env))
    assert (url.hostname, url.port, url.path) == ("db.example", 5433, "/postgres")
    assert (unquote(url.username or ""), unquote(url.password or "")) == (
        "master",
        "p@ss:/#?&=%x",
    )
    # An explicit URL wins; a partial set of libpq variables is refused by name.
    assert admin_url("postgresql://a@b/c", env) == "postgresql://a@b/c"
    with pytest.raises(MissingSettingError, match="PGPASSWORD"):
        admin_url(None, {k: v for k, v in env.items() if k != "PGPASSWORD"})
    with pytest.raises(MissingSettingError, match="PGHOST"):
        admin_url(None, {})
