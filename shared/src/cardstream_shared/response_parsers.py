"""Faster reading of chosen AWS answers, through botocore's public parser hook.

botocore reads a JSON answer by walking its output shape member by member. For an answer a
service reads thousands of times a second (Kinesis ``GetRecords`` in the stream-writer,
``PutRecords`` in ingest-api) that walk costs more than the rest of the service's work per
record; a reader written for that one shape does the same in one msgspec call.

The readers are installed by registering a response-parser factory on the session that
creates the client (``register_component("response_parser_factory", ...)``, botocore's
public hook for it), so they apply to that session's clients only. A reader sees the raw
body of a successful answer of its shape and returns what botocore's parser would, or
``None`` to leave that body to botocore; error answers and every other shape are always
botocore's. Each reader has a test that holds it equal to botocore's parser.

The factory is public; the method a reader replaces (the JSON parser's
``_handle_json_body``) is not, so aiobotocore, which pins botocore, is pinned to the
version the tests run (``shared/pyproject.toml``), and tests/unit/test_response_parsers.py
names each thing this module needs of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiobotocore.parsers import AioJSONParser, AioResponseParserFactory

# The raw JSON body and the output shape -> the parsed answer, or None for botocore's.
ShapeReader = Callable[[bytes, Any], "dict[str, Any] | None"]

# types-aiobotocore describes these classes without the botocore internals extended here.
_JSONParser: Any = AioJSONParser
_ParserFactory: Any = AioResponseParserFactory


class _ReadingJSONParser(_JSONParser):  # type: ignore[misc]
    def __init__(self, readers: Mapping[str, ShapeReader], **defaults: Any) -> None:
        super().__init__(**defaults)
        self._readers = readers

    def _handle_json_body(self, raw_body: bytes, shape: Any) -> Any:
        reader = self._readers.get(shape.name) if shape is not None and raw_body else None
        if reader is not None:
            parsed = reader(raw_body, shape)
            if parsed is not None:
                return parsed
        return super()._handle_json_body(raw_body, shape)


class ReadingParserFactory(_ParserFactory):  # type: ignore[misc]
    """aiobotocore's response-parser factory whose JSON parser reads the answers of the
    shapes named in ``readers`` (output shape name -> reader) with those readers."""

    def __init__(self, readers: Mapping[str, ShapeReader]) -> None:
        super().__init__()
        self._readers = dict(readers)

    def create_parser(self, protocol_name: str) -> Any:
        """The parser for ``protocol_name``; the ``json`` one uses the readers."""
        if protocol_name == "json":
            return _ReadingJSONParser(self._readers, **self._defaults)
        return super().create_parser(protocol_name)


def register_readers(session: Any, readers: Mapping[str, ShapeReader]) -> None:
    """Make the clients ``session`` (an aiobotocore session) creates from now on read the
    answers of the shapes in ``readers`` with them."""
    session.register_component("response_parser_factory", ReadingParserFactory(readers))
