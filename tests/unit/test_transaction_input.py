"""The door of what merchants send: the canonical fast path agrees with the contract on every
record it accepts, and a batch is read within its limits.

``canonical_transaction`` may decline any record (the contract then decides), but a record
it accepts must be one ``TransactionIn`` accepts, with the same card number and the same
facts on the stream; the door gives the contract's answer either way. Hypothesis mutates
valid records field by field with the values that separate the two: surrounding whitespace
(Python strips more characters than pydantic), newlines before the end of a pattern, other
scripts' digits, numbers where text is expected and text where numbers are, years before
1000, impossible dates, NUL, unknown and sensitive fields, repeated keys (a record naming a
key twice is refused naming it, whichever path it takes).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import msgspec
import pytest
from card_number_forms import ascii_digits, card_texts, written_card_numbers
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from record_mutations import KEY_SPELLINGS, mutated_json, numbers, padded, repeated_names

from cardstream.generator import iter_rows
from cardstream_shared.canonical_transactions import (
    canonical_transaction,
    canonical_transaction_array,
    facts_json,
)
from cardstream_shared.contract import TransactionIn, kaggle_example
from cardstream_shared.field_errors import FieldError
from cardstream_shared.redaction import mask_card_numbers
from cardstream_shared.repeated_keys import repeated_keys
from cardstream_shared.transaction_input import (
    BodyError,
    Rejected,
    TooManyRecordsError,
    Transaction,
    _array_elements,
    read_batch,
    read_transaction,
)

pytestmark = pytest.mark.unit


def typed(row: dict[str, Any]) -> dict[str, Any]:
    """A generated row as a merchant's JSON carries it: numbers as numbers."""
    return TransactionIn.model_validate(row).model_dump(mode="json")


VALID = [typed(row.as_dict()) for row in iter_rows(8, 11)] + [kaggle_example()]


def contract_facts(txn: TransactionIn) -> bytes:
    return txn.__pydantic_serializer__.to_json(txn, exclude={"cc_num"})


def contract_verdict(body: bytes) -> TransactionIn | None:
    """What the contract alone says of a record's JSON (None: refused, as is a record that
    names a key twice)."""
    try:
        data = msgspec.json.decode(body)
        if repeated_names(body):
            return None
        return TransactionIn.model_validate(data)
    except (ValidationError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def repeated_key_errors(body: bytes) -> list[FieldError]:
    """The errors the door gives a record naming keys twice (none for one that does not,
    or that is not JSON: NaN is Python's but no JSON)."""
    try:
        msgspec.json.decode(body)
    except msgspec.DecodeError:
        return []
    names = repeated_names(body)
    return [FieldError(mask_card_numbers(n), "duplicate key", "duplicate_key") for n in names]


def test_generated_and_published_rows_take_the_fast_path_with_the_contracts_bytes() -> None:
    for row in VALID:
        body = json.dumps(row).encode()
        fast = canonical_transaction(body)
        checked = contract_verdict(body)
        assert fast is not None, row["trans_num"]
        assert checked is not None
        assert fast.cc_num == checked.cc_num
        assert facts_json(fast) == contract_facts(checked)
        assert read_transaction(body) == Transaction(
            checked.trans_num, checked.cc_num, contract_facts(checked)
        )


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
    "category": st.sampled_from(["misc_net", "misc net", "misc,net", "a" * 65])
    | padded
    | card_texts,
    "trans_num": st.sampled_from(["abc_-1", "a" * 64, "a" * 65, "a b"]) | padded | card_texts,
    "lat": st.floats() | st.sampled_from(["36.07", "x", 90, 91]) | numbers,
    "merch_long": st.floats() | st.sampled_from(["-82.04", -180, -181]) | numbers,
    "city_pop": st.sampled_from([0, 3495, "3495", 3495.0, -1, 10**9]) | numbers,
    "unix_time": st.sampled_from([0, 1325376018, "1325376018", 1.5, 10**12]) | numbers,
    "merchant": padded | st.just("x" * 201) | card_texts,
    "first": padded | st.just("x" * 101) | card_texts,
    "gender": padded | card_texts,
    "street": padded | card_texts,
    "job": padded | card_texts,
}
records = mutated_json(VALID, FIELD_VALUES, ["cvv", "CVV-2", "pin", "note"])


@settings(max_examples=2000, deadline=None)
@given(records)
def test_fast_path_accepts_only_what_the_contract_accepts_with_the_same_facts(
    body: bytes,
) -> None:
    fast = canonical_transaction(body)
    checked = contract_verdict(body)
    try:
        door = read_transaction(body)
    except BodyError:
        door = None  # not JSON, or no JSON object
    if checked is None:
        assert fast is None, "fast path accepted a record the contract refuses"
        assert not isinstance(door, Transaction)
        repeated = repeated_key_errors(body)
        if repeated:
            # Refused for its repeated keys alone, naming each.
            assert isinstance(door, Rejected)
            assert door.errors == repeated
        return
    assert isinstance(door, Transaction)
    assert (door.trans_num, door.cc_num) == (checked.trans_num, checked.cc_num)
    # Equal as JSON (float digits may be written differently) and in the same key order.
    door_facts = msgspec.json.decode(door.facts)
    contract = msgspec.json.decode(contract_facts(checked))
    assert door_facts == contract
    assert list(door_facts) == list(contract)
    if fast is not None:
        assert msgspec.json.decode(facts_json(fast)) == contract


@settings(max_examples=300, deadline=None)
@given(st.lists(records | st.sampled_from([msgspec.json.encode(r) for r in VALID]), max_size=6))
def test_an_array_read_at_once_gives_each_elements_own_answer(elements: list[bytes]) -> None:
    body = b"[" + b",".join(elements) + b"]"
    whole = canonical_transaction_array(body)
    one_by_one = [canonical_transaction(element) for element in elements]
    if whole is None:
        # Read one by one instead; at least one element must be what stopped the array.
        assert None in one_by_one
        return
    assert whole == one_by_one


@pytest.mark.parametrize("spelling", KEY_SPELLINGS)
@pytest.mark.parametrize("form", ["json", "ndjson", "single"])
@pytest.mark.parametrize("where", ["before", "after"])
def test_a_record_naming_a_key_twice_is_refused_naming_the_key_whichever_value_is_valid(
    spelling: Any, form: str, where: str
) -> None:
    # A record without its label is one key shorter: a repeat must not pass for the label.
    unlabelled = {k: v for k, v in kaggle_example().items() if k != "is_fraud"}
    record = json.dumps(kaggle_example())
    for name, value, base in (
        ("amt", '"1.00"', record),
        ("merchant", '"fraud_Other"', record),
        ("is_fraud", "0", record),
        ("amt", '"1.00"', json.dumps(unlabelled)),
    ):
        repeat = f"{spelling(name)}: {value}"
        text = base[:-1] + f", {repeat}}}" if where == "after" else "{" + repeat + ", " + base[1:]
        outcome = _outcome_of_text(text, form)
        assert isinstance(outcome, Rejected), (name, form)
        assert outcome.errors == [FieldError(name, "duplicate key", "duplicate_key")]
        assert outcome.trans_num == kaggle_example()["trans_num"]
    # Whitespace before a colon counts as much as none.
    spaced = record[:-1] + ', "amt" \t : "2.00"}'
    assert _outcome_of_text(spaced, form) == Rejected(
        kaggle_example()["trans_num"], [FieldError("amt", "duplicate key", "duplicate_key")]
    )


def _outcome_of_text(text: str, form: str) -> Transaction | Rejected:
    if form == "single":
        return read_transaction(text.encode())
    [outcome] = read_batch((f"[{text}]" if form == "json" else text).encode(), form, max_records=5)  # type: ignore[arg-type]
    return outcome


def test_a_repeated_key_is_named_masked_and_a_repeated_trans_num_is_not_echoed() -> None:
    pan = "4111111111111111"
    record = json.dumps(kaggle_example())[:-1]
    body = f'{record}, "{pan}": 1, "{pan}": 2, "trans_num": "other"}}'.encode()
    outcome = read_transaction(body)
    assert isinstance(outcome, Rejected)
    assert outcome.trans_num is None
    # In the order of their first use.
    assert [(e.field, e.type) for e in outcome.errors] == [
        ("trans_num", "duplicate_key"),
        (mask_card_numbers(pan), "duplicate_key"),
    ]
    assert pan not in msgspec.json.encode(outcome).decode()


def test_a_value_that_looks_like_a_keys_end_is_no_repeat() -> None:
    # An escaped quote and a colon in a value: the count of the text suggests one key more
    # than the record has; read again, the record names each key once and is accepted.
    record = kaggle_example() | {"merchant": 'fraud_"Kub": and Sons', "job": 'a " : b'}
    body = json.dumps(record).encode()
    assert canonical_transaction(body) is None
    outcome = read_transaction(body)
    assert isinstance(outcome, Transaction)
    assert msgspec.json.decode(outcome.facts)["merchant"] == 'fraud_"Kub": and Sons'


def test_a_csv_header_naming_a_column_twice_is_refused() -> None:
    header = ",".join([*kaggle_example(), "amt"])
    row = ",".join([*(f'"{v}"' for v in kaggle_example().values()), "1.00"])
    with pytest.raises(BodyError) as refused:
        read_batch(f"{header}\n{row}\n".encode(), "csv", max_records=5)
    assert (refused.value.status, refused.value.kind) == (422, "csv-header")


# Keys as generated text: a few short names (so that objects repeat some), escapes included.
_keys = st.sampled_from(["a", "b", "amt", "\u00e9", "a.b", "", " "])
_json_scalar_text = st.sampled_from(["1", '"x"', "null", '"a\\": b"', '"\\u0022:"', "[]"])


@st.composite
def json_texts(draw: st.DrawFn, depth: int = 3) -> str:
    """JSON text of nested objects and arrays whose objects may name a key twice, spelled
    differently, with any whitespace before the colons."""
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return draw(_json_scalar_text)
    if draw(st.booleans()):
        items = draw(st.lists(json_texts(depth - 1), max_size=3))
        return "[" + ",".join(items) + "]"
    members = []
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(KEY_SPELLINGS))(draw(_keys) or "k")
        space = draw(st.sampled_from(["", " ", "\n\t"]))
        members.append(f"{key}{space}:{draw(json_texts(depth - 1))}")
    return "{" + ",".join(members) + "}"


@settings(max_examples=1000, deadline=None)
@given(json_texts())
def test_repeated_keys_are_found_in_nested_objects_as_pythons_json_finds_them(text: str) -> None:
    raw = text.encode()
    assert repeated_keys(raw, msgspec.json.decode(raw)) == repeated_names(raw)


def test_the_contract_has_no_check_the_fast_path_does_not_mirror() -> None:
    # canonical_transaction mirrors these checks by hand; a new one must be mirrored too.
    decorators = TransactionIn.__pydantic_decorators__
    assert set(decorators.model_validators) == {
        "_refuse_sensitive_data",
        "_born_before_transaction",
        "_refuse_card_numbers",
    }
    assert set(decorators.field_validators) == {"_valid_pan"}
    assert not decorators.validators


# --- batches within their limits ---------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8)
json_scalars |= st.floats(allow_nan=False, allow_infinity=False)


def json_values(depth: int) -> st.SearchStrategy[Any]:
    """JSON values whose containers nest at most ``depth`` levels."""
    if depth == 0:
        return json_scalars
    inner = json_values(depth - 1)
    return (
        json_scalars
        | st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values(2), max_size=6), st.sampled_from(["", " ", "\n\t", "\r\n  "]))
def test_an_array_is_split_into_the_elements_msgspec_reads(elements: list[Any], space: str) -> None:
    body = (space + "[" + space + f"{space},{space}".join(map(json.dumps, elements)) + "]").encode()
    assert [msgspec.json.decode(e) for e in _array_elements(body, 100)] == msgspec.json.decode(body)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b"[[[[0]]]]",
        b'[{"a": {"b": {"c": 1}}}]',
        b"[1 2]",
        b"[1,]",
        b"[,1]",
        b'[{"a":1}{"b":2}]',
        b"[1] x",
        b"[1",
        b"",
        b"   ",
        b"\xff\xfe[\x00]\x00",
        b'[{"merchant": "\xff"}]',
        b'[{"merchant": "\\ud800"}]',
        b"[tru]",
        b"[1e400]",
    ],
)
def test_a_body_that_is_no_json_array_of_records_is_refused_as_a_whole(body: bytes) -> None:
    with pytest.raises(BodyError) as refused:
        read_batch(body, "json", max_records=10)
    assert refused.value.status == 400


@pytest.mark.parametrize("body", [b"{}", b'"a"', b"1", b"null"])
def test_a_json_value_other_than_an_array_is_not_a_batch(body: bytes) -> None:
    with pytest.raises(BodyError) as refused:
        read_batch(body, "json", max_records=10)
    assert refused.value.status == 422


@pytest.mark.parametrize(
    ("form", "record", "separator", "broken"),
    [
        ("json", b"0", b",", b"[}"),
        ("json", b"{}", b",", b"{"),
        ("json", json.dumps(kaggle_example()).encode(), b",", b"{"),
        ("ndjson", b"{}", b"\n", b"\xff"),
        ("csv", b"x", b"\n", b'"unterminated'),
    ],
)
def test_reading_stops_at_the_first_record_past_the_limit(
    form: str, record: bytes, separator: bytes, broken: bytes
) -> None:
    # What follows the record past the limit is never read: it cannot be seen to be broken.
    records = separator.join([record] * 6 + [broken] * 3)
    if form == "json":
        body = b"[" + records + b"]"
    elif form == "csv":
        body = b"cc_num\n" + records
    else:
        body = records
    with pytest.raises(TooManyRecordsError):
        read_batch(body, form, max_records=5)  # type: ignore[arg-type]


def test_a_record_longer_than_any_transaction_is_refused_without_being_read() -> None:
    long = json.dumps({**kaggle_example(), "merchant": "m" * 70_000}).encode()
    for body, form in ((b"[" + long + b"]", "json"), (long, "ndjson")):
        [outcome] = read_batch(body, form, max_records=5)  # type: ignore[arg-type]
        assert isinstance(outcome, Rejected)
        assert outcome.errors[0].type == "too_large"
    with pytest.raises(BodyError) as refused:
        read_batch(b"cc_num\n" + b"1" * 70_000, "csv", max_records=5)
    assert refused.value.status == 413


def test_csv_blank_lines_and_quoted_lines_count_towards_a_bound() -> None:
    row = ",".join(str(kaggle_example()[f]) for f in ("cc_num", "trans_num"))
    body = ("cc_num,trans_num\n" + row + "\n" * 100).encode()
    with pytest.raises(BodyError) as refused:
        read_batch(body, "csv", max_records=5)
    assert refused.value.status == 413
    assert (
        len(read_batch(("cc_num,trans_num\n" + row + "\n\n").encode(), "csv", max_records=5)) == 1
    )


def test_a_record_with_many_fields_is_refused_without_naming_each() -> None:
    record = {**kaggle_example(), **{f"extra{i}": i for i in range(100)}}
    [outcome] = read_batch(json.dumps([record]).encode(), "json", max_records=5)
    assert isinstance(outcome, Rejected)
    assert outcome.errors == [
        outcome.errors[0].__class__(None, outcome.errors[0].message, "too_many_fields")
    ]


def test_a_record_names_at_most_five_unknown_fields() -> None:
    record = {**kaggle_example(), **{f"extra{i}": i for i in range(9)}}
    [outcome] = read_batch(json.dumps([record]).encode(), "json", max_records=5)
    assert isinstance(outcome, Rejected)
    assert [e.field for e in outcome.errors] == [f"extra{i}" for i in range(5)] + [None]
    assert outcome.errors[-1].message == "and 4 more unknown fields"


# --- card numbers in any field -----------------------------------------------------------------


@pytest.mark.parametrize("field", TransactionIn.TEXT_FIELDS)
@settings(max_examples=40, deadline=None)
@given(card=written_card_numbers, form=st.sampled_from(["json", "ndjson", "csv", "single"]))
def test_a_card_number_in_any_text_field_is_refused_naming_the_field_never_the_value(
    field: str, card: tuple[str, str], form: str
) -> None:
    pan, text = card
    record = {**kaggle_example(), field: text}
    if form == "single":
        outcome = read_transaction(json.dumps(record).encode())
    elif form == "csv":
        body = io.StringIO()
        writer = csv.writer(body)
        writer.writerows([list(record), list(record.values())])
        [outcome] = read_batch(body.getvalue().encode(), "csv", max_records=5)
    elif form == "ndjson":
        [outcome] = read_batch(json.dumps(record).encode(), "ndjson", max_records=5)
    else:
        [outcome] = read_batch(json.dumps([record]).encode(), "json", max_records=5)
    assert isinstance(outcome, Rejected)
    assert field in {error.field for error in outcome.errors}
    answer = msgspec.json.encode(outcome).decode()
    assert pan not in ascii_digits(answer)
    if text.isascii() and field not in ("trans_num", "category", "gender"):
        # Nothing else is wrong with it: the reason is the card number.
        assert [(e.field, e.type) for e in outcome.errors] == [(field, "card_number")]


def _outcome_of(record: dict[str, Any], form: str) -> Transaction | Rejected:
    if form == "single":
        return read_transaction(json.dumps(record).encode())
    if form == "csv":
        body = io.StringIO()
        csv.writer(body).writerows([list(record), list(record.values())])
        [outcome] = read_batch(body.getvalue().encode(), "csv", max_records=5)
    else:
        array = json.dumps([record] if form == "json" else record)
        [outcome] = read_batch(array.encode(), form, max_records=5)  # type: ignore[arg-type]
    return outcome


# Free text long enough for a card number and a word (category and gender have patterns
# and lengths of their own).
@pytest.mark.parametrize("field", ["merchant", "first", "last", "street", "city", "job"])
@settings(max_examples=25, deadline=None)
@given(
    card=written_card_numbers,
    prefix=st.sampled_from(["Visa", "Card", "Ref"]),
    suffix=st.sampled_from(["", "x", "Ltd"]),
    form=st.sampled_from(["json", "ndjson", "csv", "single"]),
)
def test_a_card_number_glued_to_a_word_in_free_text_is_refused(
    field: str, card: tuple[str, str], prefix: str, suffix: str, form: str
) -> None:
    # "Visa4111111111111111" in a merchant, job, name or street: refused like any other
    # written card number, by the fast path and by the contract.
    pan, text = card
    outcome = _outcome_of({**kaggle_example(), field: prefix + text + suffix}, form)
    assert isinstance(outcome, Rejected)
    assert (field, "card_number") in {(error.field, error.type) for error in outcome.errors}
    assert pan not in ascii_digits(msgspec.json.encode(outcome).decode())


@pytest.mark.parametrize("form", ["json", "ndjson", "csv", "single"])
def test_a_trans_num_keeps_the_digits_between_its_letters(form: str) -> None:
    # trans_num is a hexadecimal id: a decimal run between its letters is the id's own.
    trans_num = "e4111111111111111d"
    outcome = _outcome_of({**kaggle_example(), "trans_num": trans_num}, form)
    assert isinstance(outcome, Transaction)
    assert outcome.trans_num == trans_num
    separated = _outcome_of({**kaggle_example(), "trans_num": "e-4111111111111111"}, form)
    assert isinstance(separated, Rejected)
    assert [(e.field, e.type) for e in separated.errors] == [("trans_num", "card_number")]
