"""Hypothesis strategies that mutate valid records into the values that separate a fast
validation path from the contract it must agree with (used by the fast-path tests).

Whitespace that Python strips and pydantic does not, other scripts' characters, numbers
where text is expected and text where numbers are, unknown and sensitive fields, and a
key repeated at the end of the object (every JSON reader here keeps the last one).
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
    body = json.dumps(record, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):
        name = draw(st.sampled_from(names))
        body = body[:-1] + f", {json.dumps(name)}: {json.dumps(draw(field_values[name]))}}}"
    return body.encode()
