"""Hypothesis strategies that mutate valid records into the values that separate a fast
validation path from the contract it must agree with (used by the fast-path tests).

Whitespace that Python strips and pydantic does not, other scripts' characters, numbers
where text is expected and text where numbers are, unknown and sensitive fields, and a
key repeated at the start or the end of the object, written plainly, with whitespace
before its colon or with an escaped letter (the doors refuse such a record naming the
key); values holding an escaped quote and a colon (``\\":``), which look like a key's
end to a count of the text. :func:`repeated_names` is the reference the doors' answers
are held to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

SPACES = ["", " ", "\t", "\n", "\x1c", "\x1f", "\u00a0", "\u180e", "\u2028", "\u3000"]
text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
padded = st.builds(
    "{}{}{}".format,
    st.sampled_from(SPACES),
    st.sampled_from(["x", "Ab 1", "1", "0567", "misc_net"]) | text,
    st.sampled_from(SPACES),
)
numbers = st.integers(-(10**20), 10**20) | st.floats(allow_nan=False) | st.booleans()
anything = st.none() | numbers | text | padded
_MISSING = object()


@st.composite
def mutated_json(
    draw: st.DrawFn,
    bases: Sequence[Mapping[str, Any]],
    field_values: Mapping[str, st.SearchStrategy[Any]],
    extra_fields: Sequence[str],
) -> bytes:
    """One of ``bases`` as JSON with up to four fields replaced or removed, some of
    ``extra_fields`` added, and maybe a field repeated."""
    record = dict(draw(st.sampled_from(bases)))
    names = sorted(field_values)
    for name in draw(st.sets(st.sampled_from(names), max_size=4)):
        value = draw(field_values[name] | st.just(_MISSING))
        if value is _MISSING:
            record.pop(name, None)
        else:
            record[name] = value
    for extra in draw(st.sets(st.sampled_from(extra_fields))):
        record[extra] = draw(anything)
    if draw(st.integers(0, 3)) == 0:
        # A value that looks like it ends a key to a count of quotes and colons.
        name = draw(st.sampled_from(names))
        record[name] = draw(st.sampled_from(['a": b', 'x" :1', '":"'])) + str(record.get(name))
    body = json.dumps(record, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):
        name = draw(st.sampled_from(names))
        key = draw(st.sampled_from(KEY_SPELLINGS))(name)
        member = f"{key}{draw(st.sampled_from(['', ' ', chr(10)]))}: "
        member += json.dumps(draw(field_values[name]))
        if draw(st.booleans()):
            body = body[:-1] + f", {member}}}"
        else:
            body = "{" + member + ("" if body == "{}" else ", ") + body[1:]
    return body.encode()


# How a repeated key is written: as JSON writes it, or with its first letter escaped.
KEY_SPELLINGS = [json.dumps, lambda name: f'"\\u{ord(name[0]):04x}{name[1:]}"']


def repeated_names(body: bytes) -> list[str]:
    """The keys an object of ``body`` (valid JSON) names more than once, as Python's
    ``json`` reads them: the reference for the doors."""
    found: list[str] = []

    def each_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in pairs]
        found.extend(n for n in dict.fromkeys(names) if names.count(n) > 1 and n not in found)
        return dict(pairs)

    json.loads(body, object_pairs_hook=each_object)
    return found
