"""Hypothesis strategies for card numbers as people and systems write them: 11 to 19 digits
passing the Luhn check, in any script's digits, grouped or not, with any separator (used
by the detector, contract, redaction, quarantine and end-to-end tests).
"""

from __future__ import annotations

import re
import unicodedata

from hypothesis import strategies as st

from cardstream_shared.card_numbers import SEPARATORS as SEPARATORS_PATTERN
from cardstream_shared.pan import luhn_valid

# Zero of each digit script tried (ASCII, full-width, Arabic-Indic, Devanagari, Bengali,
# Thai, mathematical bold).
DIGIT_ZEROS = ["0", "\uff10", "\u0660", "\u0966", "\u09e6", "\u0e50", "\U0001d7ce"]
SEPARATORS = [
    " ", "  ", "   ", "\t", "\u00a0", "\u2009", "\u202f", "\u3000", ".", "-", "/", "_",
    " - ", "\u2013", "\uff0d", "\uff0e", "\uff0f", "\uff3f", "\u200b", "\\",
]  # fmt: skip


def luhn_completed(body: str) -> str:
    """``body`` and the check digit that makes it pass the Luhn check."""
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("one of ten check digits always passes")


card_numbers = (
    st.integers(11, 19)
    .flatmap(lambda n: st.text("0123456789", min_size=n - 1, max_size=n - 1))
    .map(luhn_completed)
    .filter(lambda pan: pan.strip("0") != "")
)


@st.composite
def written(draw: st.DrawFn, pan: str) -> str:
    """``pan`` as someone might write it: a digit script, and separators between some
    digits (groups of four, every digit, or anywhere)."""
    zero = draw(st.sampled_from(DIGIT_ZEROS))
    digits = [chr(ord(zero) + int(d)) for d in pan]
    style = draw(st.sampled_from(["plain", "fours", "every", "anywhere"]))
    if style == "plain":
        return "".join(digits)
    separator = draw(st.sampled_from(SEPARATORS))
    out = digits[0]
    for position, digit in enumerate(digits[1:], start=1):
        if style == "fours":
            cut = position % 4 == 0
        elif style == "every":
            cut = True
        else:
            cut = draw(st.booleans())
        sep = separator if style != "anywhere" else draw(st.sampled_from(SEPARATORS))
        out += (sep if cut else "") + digit
    return out


written_card_numbers = card_numbers.flatmap(lambda pan: st.tuples(st.just(pan), written(pan)))

# Card numbers as written, alone or inside other text.
card_texts = st.builds(
    "{}{}{}".format,
    st.sampled_from(["", "fraud_", "Apt ", "x-"]),
    written_card_numbers.map(lambda card: card[1]),
    st.sampled_from(["", " ", " Suite 5", "_1"]),
)


def ascii_digits(text: str) -> str:
    """Every decimal digit of ``text`` in ASCII, everything else dropped: a card number
    written in any form shows as its digits."""
    return "".join(str(unicodedata.decimal(c)) for c in text if c.isdecimal())


# A JSON escape (\uXXXX or a short one such as \t), written out before a text is scanned.
_ESCAPE = re.compile(r'\\(?:u([0-9a-fA-F]{4})|([bfnrt/\\"]))')
_SHORT = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
# What is neither a digit nor something a card number's digits may be separated by.
_NOT_WRITTEN_DIGITS = re.compile(rf"[^\d{SEPARATORS_PATTERN}]+")


def _unescaped(match: re.Match[str]) -> str:
    code, short = match.groups()
    return chr(int(code, 16)) if code else _SHORT.get(short, short)


def written_card_numbers_in(text: str, pans: set[str]) -> set[str]:
    """The members of ``pans`` written anywhere in ``text``, in any digits and with any
    separators, JSON escapes included (how a scan of stored data looks for them)."""
    # JSON inside JSON (a record kept as a string in a quarantine line) is escaped twice.
    for _ in range(3):
        text = _ESCAPE.sub(_unescaped, text)
    runs = [ascii_digits(run) for run in _NOT_WRITTEN_DIGITS.split(text)]
    return {pan for pan in pans if any(pan in run for run in runs)}
