"""The door of stream records: the fast path agrees with the shared contract on every record.

The canonical path may decline any record (the contract then decides), but a record it
accepts must be one the contract accepts, with the very same facts: the door's answer is
the contract's, fact for fact and error for error. Hypothesis mutates
valid envelopes field by field with the values that separate the two: whitespace the two
strip functions disagree on, other scripts' digits, non-canonical numbers, times and ids,
impossible dates, unknown and sensitive fields, duplicate keys (a record naming a key twice
is refused naming the key, whichever path it takes, before the contract reads it).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid
from typing import Any

import msgspec
import pytest
from card_number_forms import card_texts
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from record_mutations import KEY_SPELLINGS, anything, mutated_json, numbers, padded, repeated_names

from cardstream.generator import iter_rows
from cardstream_shared.canonical_transactions import canonical_envelope
from cardstream_shared.contract import StreamEnvelope, TransactionIn
from cardstream_shared.field_errors import FieldError, from_validation_error
from cardstream_shared.pan import PanKeyring
from cardstream_shared.redaction import mask_card_numbers
from cardstream_shared.stream_records import StreamFacts, contract_facts, read_stream_record

pytestmark = pytest.mark.unit

KEYRING = PanKeyring({"k1": secrets.token_bytes(32)}, "k1")
RECEIVED = dt.datetime(2026, 11, 27, 6, 30, 1, 250_000, tzinfo=dt.UTC)


def valid_envelopes(count: int, seed: int) -> list[StreamEnvelope]:
    envelopes = []
    for row in iter_rows(count, seed):
        txn = TransactionIn.model_validate(row.as_dict())
        envelopes.append(
            StreamEnvelope.from_transaction(
                txn, KEYRING.tokenize(txn.cc_num), client_id="client-1", received_at=RECEIVED
            )
        )
    return envelopes


BASE = [json.loads(e.to_json_bytes()) for e in valid_envelopes(5, 7)]

FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "trans_date_trans_time": st.sampled_from(
        [
            "2019-01-01 00:00:18",
            " 2019-01-01 00:00:18 ",
            "2019-01-01T00:00:18",
            "2019-02-29 00:00:00",
            "2020-02-29 23:59:59",
            "2019-02-30 00:00:00",
            "2019-01-01 24:00:00",
            "2019-01-01 23:59:60",
            "0000-01-01 00:00:00",
            "2019-1-1 0:0:18",
            "2019-01-01 00:00:18.5",
            "2019-01-01 00:00:18Z",
            "\x1f2019-01-01 00:00:18",
            "2019-01-01 00:00:18\u00a0",
            "١٩٩٠-01-01 00:00:00",
            "1960-01-01 12:00:00",
        ]
    )
    | numbers,
    "amt": st.sampled_from(
        [
            "4.97",
            "0",
            "0.00",
            "0.5",
            "-0.00",
            "-1",
            "01.5",
            "1e2",
            "4.970",
            "4.9",
            "9999999999.99",
            "10000000000",
            "10000000000.00",
            " 4.97",
            "4.97\x1f",
            "١٢",
            "NaN",
            "Infinity",
            "1_000",
            "",
        ]
    )
    | numbers,
    "zip": st.sampled_from(["28654", "0", "01234", " 123 ", "١٢٣", "12345678901", "", "12a"])
    | numbers,
    "is_fraud": st.sampled_from([0, 1, None, True, False, "1", "0", "", " 1 ", 1.0, 2, -1]),
    "ingest_id": st.sampled_from(
        [
            "2e4cb9d3-ad5b-577b-8219-5535d10d3ee3",
            "2E4CB9D3-AD5B-577B-8219-5535D10D3EE3",
            "2e4cb9d3ad5b577b82195535d10d3ee3",
            "{2e4cb9d3-ad5b-577b-8219-5535d10d3ee3}",
            "urn:uuid:2e4cb9d3-ad5b-577b-8219-5535d10d3ee3",
            " 2e4cb9d3-ad5b-577b-8219-5535d10d3ee3",
            "00000000-0000-0000-0000-000000000000",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
        ]
    )
    | st.uuids().map(str)
    | anything,
    "card_last4": st.sampled_from(["0567", "١٢٣٤", "567", " 0567", "05678", "abcd"]) | numbers,
    "received_at": st.sampled_from(
        [
            "2026-11-27T07:33:58.030833Z",
            "2026-11-27T07:33:58Z",
            "2026-11-27T07:33:58",
            "2026-11-27T09:33:58+02:00",
            "2026-11-27 07:33:58Z",
            "2026-11-27T07:33:58.1Z",
            "2026-02-30T07:33:58Z",
            "2024-02-29T23:59:59.999999Z",
            "2026-11-27T07:33:60Z",
            "2026-11-27T24:00:00Z",
            "0001-01-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "2026-11-27T07:33:58.000000Z",
            " 2026-11-27T07:33:58Z",
            "2026-11-27T07:33:58z",
            "2026-11-27T07:33:58.0308330Z",
            "2026-11-27T07:33:58.030833+00:00",
        ]
    )
    | numbers,
    "dob": st.sampled_from(["1988-03-09", "2030-01-01", "1988-3-9", "1988-03-09T00:00:00"])
    | numbers,
    "state": st.sampled_from(["NC", "nc", " NC", "N"]) | anything,
    "lat": st.floats() | st.sampled_from(["36.07", "x"]) | numbers,
    "merch_long": st.floats() | st.sampled_from(["-82.04", "x"]) | numbers,
    "city_pop": st.sampled_from([0, 3495, "3495", 3495.0, 3495.5, -1, 10**9]) | numbers,
    "unix_time": st.sampled_from([0, 1325376018, "1325376018", 1.5, 10**12]) | numbers,
    "schema_version": st.sampled_from([1, 2, "1", 1.0, True, None]),
    "trans_num": st.sampled_from(["abc_-1", " abc ", "a" * 65, "a b", ""]) | padded | card_texts,
    "card_token": st.sampled_from(["A" * 64, "a" * 63]) | padded,
    "merchant": padded | card_texts,
    "first": padded | card_texts,
    "street": padded | card_texts,
    "client_id": padded | card_texts,
    "card_key_version": padded | card_texts,
    "gender": padded | card_texts,
    "job": padded | card_texts,
    "category": st.sampled_from(["misc_net", "misc net", "misc,net", ""]) | padded | card_texts,
}
lines = mutated_json(BASE, FIELD_VALUES, ["cvv", "CVV-2", "pin", "note", "cc_num"])


def contract_verdict(line: bytes) -> StreamFacts | list[FieldError]:
    """What the contract alone says of a line, once it names each key once."""
    try:
        msgspec.json.decode(line)
    except msgspec.DecodeError:
        pass
    else:
        repeated = repeated_names(line)
        if repeated:
            return [
                FieldError(mask_card_numbers(name), "duplicate key", "duplicate_key")
                for name in repeated
            ]
    try:
        return contract_facts(StreamEnvelope.model_validate_json(line))
    except ValidationError as error:
        return from_validation_error(error)


@settings(max_examples=1500, deadline=None)
@given(lines)
def test_the_door_gives_the_contracts_answer_whichever_path_takes_the_record(
    line: bytes,
) -> None:
    door = read_stream_record(line)
    assert door == contract_verdict(line)
    if canonical_envelope(line) is not None:
        assert isinstance(door, StreamFacts), "fast path accepted a line the contract refuses"


def test_every_envelope_the_stream_writer_writes_takes_the_fast_path() -> None:
    envelopes = valid_envelopes(500, 11)
    # ingest ids of every shape uuid4 gives, and a fraud label missing or present.
    labelled = [
        e.model_copy(update={"ingest_id": uuid.uuid4(), "is_fraud": [None, 0, 1][i % 3]})
        for i, e in enumerate(envelopes)
    ]
    for envelope in labelled:
        line = envelope.to_json_bytes()
        assert canonical_envelope(line) is not None
        assert read_stream_record(line) == contract_verdict(line)


@pytest.mark.parametrize("spelling", KEY_SPELLINGS)
@pytest.mark.parametrize("name", ["amt", "client_id", "card_token", "is_fraud", "received_at"])
def test_a_stream_record_naming_a_key_twice_is_refused_naming_the_key(
    spelling: Any, name: str
) -> None:
    line = valid_envelopes(1, 3)[0].to_json_bytes()
    value = json.dumps(json.loads(line)[name]).encode()
    for repeated in (
        line[:-1] + b"," + spelling(name).encode() + b":" + value + b"}",
        b"{" + spelling(name).encode() + b" : " + value + b"," + line[1:],
    ):
        # The same value twice: still refused, a reader cannot tell it is the same.
        assert read_stream_record(repeated) == [FieldError(name, "duplicate key", "duplicate_key")]


def test_the_contract_has_no_check_the_fast_path_does_not_mirror() -> None:
    # The fast path mirrors these two model checks by hand; a new one must be mirrored too.
    decorators = StreamEnvelope.__pydantic_decorators__
    assert set(decorators.model_validators) == {
        "_refuse_sensitive_data",
        "_born_before_transaction",
        "_refuse_card_numbers",
    }
    assert not decorators.field_validators
    assert not decorators.validators
