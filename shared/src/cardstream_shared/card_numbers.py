"""Card numbers written anywhere in a text: the one detector behind every control that keeps
primary account numbers out of fields, answers, logs and quarantine rows (PCI DSS 3.3-3.5).

The contract refuses a record with a card number in any text field, the canonical fast path
declines one, log redaction and the db-loader's quarantine mask them: all through
:func:`find_card_numbers`, so the shape is defined once.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final, NamedTuple

from cardstream_shared.pan import PAN_MAX_DIGITS, PAN_MIN_DIGITS, luhn_valid

# What may stand between the digits of a written card number: any Unicode space, dots,
# dashes, slashes and underscores (with their full-width and typographic forms), and the
# invisible characters a copy and paste can leave between digits.
SEPARATORS: Final = (
    r"\s\u200b-\u200d\u2060\ufeff"
    r".\u00b7\u2024\u3002\uff0e"
    r"\-\u2010-\u2015\u2212\ufe58\ufe63\uff0d"
    r"/\\\u2044\u2215\uff0f"
    r"_\uff3f"
)
# A run of at least PAN_MIN_DIGITS decimal digits (\d: any script's, str.isdecimal) with
# separators between them. Runs with fewer digits are skipped inside the pattern, at C
# speed, so text without a long digit run costs one search.
_RUN: Final = re.compile(rf"\d(?:[{SEPARATORS}]*\d){{{PAN_MIN_DIGITS - 1},}}")
_GROUP: Final = re.compile(r"\d+")

# Fields that hold identifiers made of hexadecimal digits (and, in ``trans_num``, dashes and
# underscores): their runs of decimal digits between letters are the id's own, by chance
# (see ``hex_id`` below). Every other text field is read as free text.
HEX_ID_FIELDS: Final = frozenset({"trans_num", "ingest_id", "card_token"})


class CardNumber(NamedTuple):
    """Where a card number is written in a text, and its last four digits (in ASCII)."""

    start: int
    end: int
    last4: str


def find_card_numbers(text: str, *, hex_id: bool = False) -> list[CardNumber]:
    """Every card number written in ``text``, in order.

    A card number here is 11 to 19 decimal digits (the lengths ``cc_num`` accepts; the
    published data has card numbers of 11 and 12 digits) that pass the Luhn check and are
    not all zeros, written in any script's digits (full-width, Arabic-Indic, ...), with any
    of :data:`SEPARATORS` between any two of them. The digits are consecutive groups of a
    run of digits and separators, so a card number followed by an expiry date, preceded by
    a count or glued to a word (``Visa4111111111111111``) is still found.

    ``hex_id``: ``text`` is an identifier made of hexadecimal digits (a field of
    :data:`HEX_ID_FIELDS`), where a run glued to a letter is part of the id, not a card
    number: a random 32-character id holds long runs of decimal digits by chance, and about
    one in two hundred would otherwise hold a "card number". Only the runs set apart from
    letters (by a separator or the id's ends) are read there.
    """
    found: list[CardNumber] = []
    for run in _RUN.finditer(text):
        start, end = run.span()
        if hex_id and (
            (start and text[start - 1].isalnum()) or (end < len(text) and text[end].isalnum())
        ):
            continue
        found.extend(_within(run.group(), start))
    return found


def _within(run: str, offset: int) -> list[CardNumber]:
    """The card numbers among the consecutive digit groups of one run."""
    groups = [(m.start(), m.end(), _ascii(m.group())) for m in _GROUP.finditer(run)]
    found: list[CardNumber] = []
    first = 0
    while first < len(groups):
        digits = ""
        hit: CardNumber | None = None
        for last in range(first, len(groups)):
            digits += groups[last][2]
            if len(digits) > PAN_MAX_DIGITS:
                break
            if len(digits) >= PAN_MIN_DIGITS and digits.strip("0") and luhn_valid(digits):
                # The longest card number starting at this group.
                hit = CardNumber(offset + groups[first][0], offset + groups[last][1], digits[-4:])
                next_first = last + 1
        if hit is None:
            first += 1
        else:
            found.append(hit)
            first = next_first
    return found


def _ascii(digits: str) -> str:
    if digits.isascii():
        return digits
    return "".join(str(unicodedata.decimal(digit)) for digit in digits)
