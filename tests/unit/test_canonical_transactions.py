"""The canonical fast path agrees with the contract on every record it accepts.

``canonical_transaction`` may decline any record (the contract then decides), but a record
it accepts must be one ``TransactionIn`` accepts, with the same card number and the same
facts on the stream. Hypothesis mutates valid records field by field with the values that
separate the two: surrounding whitespace (Python strips more characters than pydantic),
newlines before the end of a pattern, other scripts' digits, numbers where text is
expected and text where numbers are, years before 1000, impossible dates, NUL, unknown and
sensitive fields, repeated keys.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from record_mutations import mutated_json, numbers, padded

from cardstream.generator import iter_rows
from cardstream_shared.canonical_transactions import (
    canonical_transaction,
    canonical_transaction_array,
    facts_json,
)
from cardstream_shared.contract import TransactionIn, kaggle_example
from cardstream_shared.parsers import validate

pytestmark = pytest.mark.unit


def typed(row: dict[str, Any]) -> dict[str, Any]:
    """A generated row as a merchant's JSON carries it: numbers as numbers."""
    txn = validate(row)
    assert isinstance(txn, TransactionIn)
    return txn.model_dump(mode="json")


VALID = [typed(row.as_dict()) for row in iter_rows(8, 11)] + [kaggle_example()]


def contract_facts(txn: TransactionIn) -> bytes:
    return txn.__pydantic_serializer__.to_json(txn, exclude={"cc_num"})


def test_generated_and_published_rows_take_the_fast_path_with_the_contracts_bytes() -> None:
    for row in VALID:
        fast = canonical_transaction(json.dumps(row).encode())
        checked = validate(row)
        assert fast is not None, row["trans_num"]
        assert isinstance(checked, TransactionIn)
        assert fast.cc_num == checked.cc_num
        assert facts_json(fast) == contract_facts(checked)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("zip", "28654\n"),  # "$" would match before the newline
        ("trans_num", "abc\n"),
        ("state", "NC\n"),
        ("amt", "4.97\n"),
        ("trans_date_trans_time", "2019-01-01 00:00:18\n"),
        ("merchant", " fraud_Rippin"),
        ("city", "Moravian Falls\x1f"),
        ("merchant", "a\u0000b"),
        ("trans_date_trans_time", "0999-01-01 00:00:18"),  # the contract writes year 999
        ("amt", 4.97),
        ("zip", 28654),
        ("cc_num", 2703186189652095),
        ("is_fraud", "1"),
    ],
)
def test_values_outside_the_canonical_form_go_to_the_contract(field: str, value: Any) -> None:
    record = {**kaggle_example(), field: value}
    assert canonical_transaction(json.dumps(record).encode()) is None


def test_a_card_number_failing_luhn_or_a_birth_after_the_transaction_is_declined() -> None:
    assert (
        canonical_transaction(
            json.dumps({**kaggle_example(), "cc_num": "2703186189652096"}).encode()
        )
        is None
    )
    assert (
        canonical_transaction(json.dumps({**kaggle_example(), "dob": "2019-01-02"}).encode())
        is None
    )


FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "trans_date_trans_time": st.sampled_from(
        [
            "2019-01-01 00:00:18",
            "2019-01-01T00:00:18",
            "2019-02-29 00:00:00",
            "2020-02-29 23:59:59",
            "2019-01-01 24:00:00",
            "0999-12-31 00:00:00",
            "1000-01-01 00:00:00",
            "2019-01-01 00:00:18.5",
            "2019-01-01 00:00:18Z",
            "2019-W01-1 00:00:18",
            "١٩٩٠-01-01 00:00:00",
        ]
    )
    | padded,
    "cc_num": st.sampled_from(
        ["2703186189652095", "4613314721966", "2703186189652096", "١٢٣٤٥٦٧٨٩٠١٢", "0" * 20]
    )
    | padded
    | numbers,
    "amt": st.sampled_from(
        ["4.97", "0", "0.00", "0.5", "-1", "01.5", "1e2", "4.970", "9999999999.99", "1e10"]
    )
    | padded
    | numbers,
    "zip": st.sampled_from(["28654", "0", "01234", "12345678901", "", "12a", "١٢٣"])
    | padded
    | numbers,
    "is_fraud": st.sampled_from([0, 1, None, True, False, "1", "0", "", 1.0, 2]),
    "dob": st.sampled_from(["1988-03-09", "2030-01-01", "1988-3-9", "1988-03-09T00:00:00"])
    | numbers,
    "state": st.sampled_from(["NC", "nc", "N", "NCC"]) | padded,
    "category": st.sampled_from(["misc_net", "misc net", "misc,net", "a" * 65]) | padded,
    "trans_num": st.sampled_from(["abc_-1", "a" * 64, "a" * 65, "a b"]) | padded,
    "lat": st.floats() | st.sampled_from(["36.07", "x", 90, 91]) | numbers,
    "merch_long": st.floats() | st.sampled_from(["-82.04", -180, -181]) | numbers,
    "city_pop": st.sampled_from([0, 3495, "3495", 3495.0, -1, 10**9]) | numbers,
    "unix_time": st.sampled_from([0, 1325376018, "1325376018", 1.5, 10**12]) | numbers,
    "merchant": padded | st.just("x" * 201),
    "first": padded | st.just("x" * 101),
    "gender": padded,
    "street": padded,
    "job": padded,
}
records = mutated_json(VALID, FIELD_VALUES, ["cvv", "CVV-2", "pin", "note"])


@settings(max_examples=2000, deadline=None)
@given(records)
def test_fast_path_accepts_only_what_the_contract_accepts_with_the_same_facts(
    body: bytes,
) -> None:
    fast = canonical_transaction(body)
    if fast is None:
        return
    checked = validate(orjson.loads(body))
    if not isinstance(checked, TransactionIn):
        pytest.fail(f"fast path accepted a record the contract refuses: {checked}")
    assert fast.cc_num == checked.cc_num
    # Equal as JSON (float digits may be written differently) and in the same key order.
    fast_facts, contract = orjson.loads(facts_json(fast)), orjson.loads(contract_facts(checked))
    assert fast_facts == contract
    assert list(fast_facts) == list(contract)


@settings(max_examples=300, deadline=None)
@given(st.lists(records | st.sampled_from([orjson.dumps(r) for r in VALID]), max_size=6))
def test_an_array_read_at_once_gives_each_elements_own_answer(elements: list[bytes]) -> None:
    body = b"[" + b",".join(elements) + b"]"
    whole = canonical_transaction_array(body)
    one_by_one = [canonical_transaction(element) for element in elements]
    if whole is None:
        # Read one by one instead; at least one element must be what stopped the array.
        assert None in one_by_one
        return
    assert whole == one_by_one


def test_the_contract_has_no_check_the_fast_path_does_not_mirror() -> None:
    # canonical_transaction mirrors these checks by hand; a new one must be mirrored too.
    decorators = TransactionIn.__pydantic_decorators__
    assert set(decorators.model_validators) == {
        "_refuse_sensitive_data",
        "_born_before_transaction",
    }
    assert set(decorators.field_validators) == {"_valid_pan"}
    assert not decorators.validators
