"""The card-number detector and the redaction built on it: every written form is found and
masked; ids, sequence numbers, times and numbers that are not card numbers are left alone."""

from __future__ import annotations

import io
import json
import logging
import secrets

import pytest
from card_number_forms import ascii_digits, written_card_numbers
from hypothesis import given, settings
from hypothesis import strategies as st

from cardstream_shared.card_numbers import find_card_numbers
from cardstream_shared.json_logging import JsonFormatter
from cardstream_shared.redaction import RedactingFilter, redact_text, redacted_record

pytestmark = pytest.mark.unit

# Text around a card number that is no letter or digit next to it.
before = st.sampled_from(["", " ", "card ", "fraud_", "#", "(", "no. ", "pan=", '{"note": "'])
after = st.sampled_from(["", " ", ".", ",", " exp 12/25", ")", " 1225", '"}', "\n"])


@settings(max_examples=600, deadline=None)
@given(written_card_numbers, before, after)
def test_every_written_form_is_found_with_its_last_four(
    card: tuple[str, str], prefix: str, suffix: str
) -> None:
    pan, text = card
    whole = prefix + text + suffix
    found = find_card_numbers(whole)
    start, end = len(prefix), len(prefix) + len(text)
    assert any(f.start <= start and end <= f.end for f in found), (whole, found)
    assert pan[-4:] in {f.last4 for f in found}


@settings(max_examples=600, deadline=None)
@given(written_card_numbers, before, after)
def test_redaction_leaves_no_written_card_number(
    card: tuple[str, str], prefix: str, suffix: str
) -> None:
    pan, text = card
    redacted = redact_text(prefix + text + suffix)
    assert pan not in ascii_digits(redacted)
    assert "[REDACTED]" in redacted


@pytest.mark.parametrize(
    "text",
    [
        "seq 49654999999999999999999999999999999999999999999999999999 ts 1325376018",
        "4111111111111112",  # fails the Luhn check
        "shardId-000000000000 done",  # zeros pass the Luhn check but are no card
        "2026-11-27 07:33:58.030833+00:00",
        '{"lat":36.0788,"long":-81.1781,"city_pop":3495,"unix_time":1325376018}',
        "561 Perry Cove",
    ],
)
def test_what_is_no_card_number_is_left_alone(text: str) -> None:
    assert find_card_numbers(text) == []
    assert redact_text(text) == text


# Around a card number: a word glued to it, or not.
glued_before = st.sampled_from(["Visa", "card", "x", "Ref#A", "fraud_Visa"])
glued_after = st.sampled_from(["", "x", "exp", "Ltd"])


@settings(max_examples=400, deadline=None)
@given(written_card_numbers, glued_before, glued_after)
def test_a_card_number_glued_to_a_word_is_found_and_masked(
    card: tuple[str, str], prefix: str, suffix: str
) -> None:
    # "Visa4111111111111111" in a merchant, job, name or street is a card number.
    pan, text = card
    found = find_card_numbers(prefix + text + suffix)
    assert pan[-4:] in {f.last4 for f in found}
    assert pan not in ascii_digits(redact_text(prefix + text + suffix))
    record = json.dumps({"merchant": prefix + text + suffix}).encode()
    assert pan not in ascii_digits(redacted_record(record, 4096))


@pytest.mark.parametrize(
    "text",
    [
        "0b242abb623afc578575680df30655b9",
        "1f76529f8574734946361c461b024d99",
        "a4111111111111111b",
        "card4111111111111111",
        "4111111111111111x",
        "6c0e5ae8-8574-7349-4636-1c461b024d99",
    ],
)
def test_a_hexadecimal_id_keeps_the_digits_between_its_letters(text: str) -> None:
    # In an id made of hex digits a run glued to a letter is the id's own: left alone
    # where the text is read as such an id (hex_id), and in the id fields of a record.
    assert find_card_numbers(text, hex_id=True) == []
    assert redacted_record(json.dumps({"trans_num": text}).encode(), 4096) == (
        json.dumps({"trans_num": text}, separators=(",", ":"))
    )
    # A run set apart from letters is read in an id too.
    assert find_card_numbers(f"{text}-x_4111111111111111", hex_id=True)


def test_random_hexadecimal_ids_are_never_card_numbers() -> None:
    ids = [secrets.token_hex(16) for _ in range(20_000)]
    assert not [h for h in ids if find_card_numbers(h, hex_id=True)]


@given(written_card_numbers)
@settings(max_examples=200, deadline=None)
def test_json_written_with_escapes_is_masked_as_the_characters_it_holds(
    card: tuple[str, str],
) -> None:
    pan, text = card
    for data in (
        json.dumps({"merchant": text}).encode(),  # \u escapes for every non-ASCII character
        json.dumps({"merchant": text}).encode()[:-1],  # no longer JSON
    ):
        assert pan not in ascii_digits(redacted_record(data, 4096))


@given(written_card_numbers)
@settings(max_examples=200, deadline=None)
def test_log_lines_never_carry_a_written_card_number(card: tuple[str, str]) -> None:
    pan, text = card
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("cardstream.test.card_numbers")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("refused %s", text, extra={"field": text, "nested": {"value": text}})
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert pan not in ascii_digits(line)
    assert pan not in ascii_digits(json.loads(line)["nested"]["value"])
