"""Keys a JSON object names more than once: an ambiguous record, refused rather than read.

JSON readers disagree on ``{"amt": 1, "amt": 2}`` (RFC 8259 4: names "SHOULD be unique"):
msgspec, orjson, pydantic and Python's ``json`` keep the last value, others the first or
refuse. A record that means one thing to this service and another to the next reader of
the same bytes is refused, naming the key (masked like any field name a sender wrote: it
may be a card number), never its values.

The fast decoders keep no trace of a repeated key, so it is found by counting first: every
key of the text is a string followed by a colon outside any string, so the text holds at
least as many quote-colon pairs as key occurrences, and a decoded value with as many keys
names each key once (the common case: one C search of the text). Only text with more, a
repeat or a colon quoted inside a string, is read again by Python's ``json``, which hands
each object's keys in order to a hook.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Final

from cardstream_shared.field_errors import FieldError
from cardstream_shared.redaction import mask_card_numbers

# The end of a key: its closing quote, maybe whitespace, the colon. A string's text cannot
# hold a raw quote, so each colon after a key ends exactly one match.
_KEY_END: Final = re.compile(rb'"[ \t\n\r]*+:')
_CONTAINERS: Final = (dict, list)


def _decoded_keys(value: dict[str, Any] | list[Any]) -> int:
    """How many keys the objects of a decoded JSON value hold, nested ones included."""
    count = 0
    # A stack, not recursion: the value may nest as deep as the decoder allowed.
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if type(item) is dict:
            count += len(item)
            item = item.values()
        pending += [child for child in item if isinstance(child, _CONTAINERS)]
    return count


def _read_again(raw: bytes) -> list[str]:
    repeated: dict[str, None] = {}

    def each_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        value = dict(pairs)
        if len(value) < len(pairs):
            counts = Counter(key for key, _ in pairs)
            repeated.update((key, None) for key, count in counts.items() if count > 1)
        return value

    json.loads(raw, object_pairs_hook=each_object)
    return list(repeated)


def repeated_keys(raw: bytes, decoded: Any) -> list[str]:
    """The keys that an object of ``raw`` names more than once, each once, in order; empty
    when every object names each of its keys once.

    ``raw`` is valid JSON text and ``decoded`` its value as a fast decoder read it. Raises
    ``RecursionError`` for text nested too deeply for Python's ``json``, and ``ValueError``
    for text it does not take.
    """
    if not isinstance(decoded, _CONTAINERS):
        return []
    if len(_KEY_END.findall(raw)) == _decoded_keys(decoded):
        return []
    return _read_again(raw)


def repeated_key_errors(raw: bytes, decoded: Any, *, prefix: str = "") -> list[FieldError]:
    """:func:`repeated_keys` as field errors (``type: duplicate_key``), each name after
    ``prefix`` and masked (a key may be a card number)."""
    return [
        FieldError(mask_card_numbers(prefix + name), "duplicate key", "duplicate_key")
        for name in repeated_keys(raw, decoded)
    ]
