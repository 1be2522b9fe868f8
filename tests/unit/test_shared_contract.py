"""The transaction contract: what is accepted, what is refused, and that nothing is lost."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardstream_shared.contract import StreamEnvelope, TransactionIn, kaggle_example
from cardstream_shared.field_errors import FieldError
from cardstream_shared.pan import PanKeyring, luhn_valid
from cardstream_shared.transaction_input import (
    Outcome,
    Rejected,
    Transaction,
    read_batch,
    read_transaction,
)

PUBLISHED_HEADER = (
    ",trans_date_trans_time,cc_num,merchant,category,amt,first,last,gender,street,city,state,"
    "zip,lat,long,city_pop,job,dob,trans_num,unix_time,merch_lat,merch_long,is_fraud"
)
# Rows as they appear in the published fraudTrain.csv: quoted commas, an 11-digit card
# number (a 12-digit number whose leading zero was lost), a 4-digit zip, a 19-digit card.
PUBLISHED_ROWS = [
    '0,2019-01-01 00:00:18,2703186189652095,"fraud_Rippin, Kub and Mann",misc_net,4.97,'
    "Jennifer,Banks,F,561 Perry Cove,Moravian Falls,NC,28654,36.0788,-81.1781,3495,"
    '"Psychologist, counselling",1988-03-09,0b242abb623afc578575680df30655b9,1325376018,'
    "36.011293,-82.048315,0",
    "1,2019-01-01 00:00:44,630423337322,fraud_Heller Gutmann and Zieme,grocery_pos,107.23,"
    "Stephanie,Gill,F,43039 Riley Greens Suite 393,Orient,WA,99160,48.8878,-118.2105,149,"
    "Special educational needs teacher,1978-06-21,1f76529f8574734946361c461b024d99,"
    "1325376044,49.159047,-118.186462,0",
    "2,2019-01-01 00:00:51,38859492057661,fraud_Lind-Buckridge,entertainment,220.11,Edward,"
    "Sanchez,M,594 White Dale Suite 530,Malad City,ID,83252,42.1808,-112.262,4154,"
    "Nature conservation officer,1962-01-19,a1a22d70485983eba12c9ade8ea8cd6a,1325376051,"
    "43.150704,-112.154481,0",
    "3,2019-01-01 01:02:11,4613314721966,fraud_Kutch and Sons,grocery_pos,281.06,Jason,"
    "Murphy,M,542 Steve Curve Suite 011,Collettsville,NC,28611,35.9946,-81.7266,885,"
    "Soil scientist,1988-09-15,e8a81877ae9a0a7f883e15cb39dc4022,1325379731,36.430124,"
    "-81.179483,1",
    "4,2019-01-02 01:06:37,60416207185,fraud_Erdman-Kertzmann,gas_transport,15.56,Mary,"
    "Diaz,F,9886 Anita Drive,Fort Washakie,WY,82514,43.0048,-108.8964,1645,"
    "Information systems manager,1986-02-17,1ebd5b1a3d0e4e3ba4a7e5e5e5b3c7d1,1325466397,"
    "43.457003,-108.376893,0",
    "5,2019-01-02 03:05:23,4428780983793657331,fraud_Bauch-Raynor,grocery_pos,6.53,Jo,"
    "Lee,M,5 Main St,Holyoke,MA,1040,42.2,-72.6,40000,Chemist,1960-05-05,"
    "5ebd5b1a3d0e4e3ba4a7e5e5e5b3c7d2,1325473523,42.5,-72.1,0",
]


def _csv(rows: list[str]) -> bytes:
    return ("\n".join([PUBLISHED_HEADER, *rows]) + "\n").encode()


def check(record: dict[str, Any]) -> Outcome:
    """The door's verdict on one record sent as JSON."""
    return read_transaction(json.dumps(record).encode())


def errors_of(outcome: Outcome) -> list[FieldError]:
    assert isinstance(outcome, Rejected), outcome
    return outcome.errors


def test_published_rows_are_all_accepted_with_values_as_sent() -> None:
    txns = read_batch(_csv(PUBLISHED_ROWS), "csv", max_records=10)
    assert all(isinstance(t, Transaction) for t in txns), txns
    first, second, _, _, eleven, nineteen = (t for t in txns if isinstance(t, Transaction))
    facts = msgspec.json.decode(first.facts)
    assert facts["merchant"] == "fraud_Rippin, Kub and Mann"
    assert facts["job"] == "Psychologist, counselling"
    assert Decimal(facts["amt"]) == Decimal("4.97")
    assert facts["unix_time"] == 1325376018
    assert facts["merch_lat"] == 36.011293
    assert "cc_num" not in facts
    assert second.cc_num == "630423337322"
    assert eleven.cc_num == "60416207185"
    assert msgspec.json.decode(nineteen.facts)["zip"] == "1040"
    assert len(nineteen.cc_num) == 19


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("cc_num", "4111111111111112", "Luhn"),
        ("cc_num", "41111", "digits"),
        ("amt", "-1.00", "greater than or equal"),
        ("amt", "1.234", "2 decimal places"),
        ("state", "North Carolina", "pattern"),
        ("lat", 91.0, "less than or equal"),
        ("trans_date_trans_time", "01/01/2019", "timestamp"),
        ("is_fraud", "2", "0 or 1"),
        ("dob", "2030-01-01", "dob is after"),
        # PostgreSQL text cannot hold NUL: refused at the edge, not in the loader.
        ("merchant", "fraud_Kub\x00and Mann", "pattern"),
        ("job", "\x00", "pattern"),
        # Other scripts' digits are digits to Python but not to PostgreSQL's [0-9] checks.
        ("zip", "\u0661\u0662\u0663\u0664", "pattern"),
        ("cc_num", "\u0664" * 16, "digits"),
    ],
)
def test_impossible_values_are_refused_with_the_field_named(
    field: str, value: Any, reason: str
) -> None:
    errors = errors_of(check({**kaggle_example(), field: value}))
    assert any(reason in e.message for e in errors), errors
    assert field in {e.field for e in errors} or field == "dob"


@pytest.mark.parametrize("name", ["cvv", "CVV2", "cvc", "pin", "Track2", "track_data", "pin-block"])
def test_sensitive_authentication_data_is_refused_without_echoing_it(name: str) -> None:
    errors = errors_of(check({**kaggle_example(), name: "987"}))
    assert errors == [
        FieldError(name, errors[0].message, "sensitive_data"),
    ]
    assert "987" not in json.dumps([e.as_dict() for e in errors])


def test_unknown_fields_are_refused_and_errors_never_echo_the_card_number() -> None:
    pan = kaggle_example()["cc_num"]
    errors = errors_of(check({**kaggle_example(), "loyalty_id": "x", "amt": "abc"}))
    assert {e.field for e in errors} == {"loyalty_id", "amt"}
    assert pan not in json.dumps([e.as_dict() for e in errors])


def test_one_bad_record_does_not_cost_the_others() -> None:
    good = kaggle_example()
    body = json.dumps([good, "not an object", {**good, "amt": "x"}, good]).encode()
    outcomes = read_batch(body, "json", max_records=10)
    assert [isinstance(o, Transaction) for o in outcomes] == [True, False, False, True]


def test_ndjson_and_broken_lines() -> None:
    good = json.dumps(kaggle_example())
    outcomes = read_batch("\n".join([good, "", "{broken", good]).encode(), "ndjson", max_records=9)
    assert [type(o) for o in outcomes] == [Transaction, Rejected, Transaction]
    assert errors_of(outcomes[1])[0].type == "json_invalid"


def test_csv_row_with_wrong_column_count_is_reported_alone() -> None:
    body = _csv([PUBLISHED_ROWS[0], "7,short,row", PUBLISHED_ROWS[1]])
    outcomes = read_batch(body, "csv", max_records=9)
    assert [type(o) for o in outcomes] == [Transaction, Rejected, Transaction]
    assert errors_of(outcomes[1])[0].type == "csv_columns"


def test_envelope_carries_every_fact_but_never_the_pan() -> None:
    txn = TransactionIn.model_validate(kaggle_example())
    ring = PanKeyring.from_secret_string(PanKeyring.new_secret_string())
    envelope = StreamEnvelope.from_transaction(
        txn, ring.tokenize(txn.cc_num), client_id="merchant-1", received_at=dt.datetime.now(dt.UTC)
    )
    raw = envelope.to_json_bytes()
    assert txn.cc_num.encode() not in raw
    decoded = StreamEnvelope.model_validate_json(raw)
    assert decoded == envelope
    for name in TransactionIn.model_fields:
        if name != "cc_num":
            assert getattr(decoded, name) == getattr(txn, name)
    assert decoded.card_last4 == "2095"


@given(st.integers(min_value=10**10, max_value=10**19 - 1))
def test_luhn_matches_the_textbook_definition(number: int) -> None:
    digits = [int(d) for d in str(number)]
    checksum = sum(digits[-1::-2]) + sum(sum(divmod(2 * d, 10)) for d in digits[-2::-2])
    assert luhn_valid(str(number)) == (checksum % 10 == 0)
