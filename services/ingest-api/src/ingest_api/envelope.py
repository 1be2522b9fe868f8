"""Stream records, serialized without building a second model per record.

The stream contract is ``StreamEnvelope.to_json_bytes()``: the transaction's facts in field
order, then the lineage fields. Building a ``StreamEnvelope`` per record and serializing it
cost about as much CPU as validating the record, so this module serializes the validated
``TransactionIn`` once (without ``cc_num``) and appends the lineage, which is the same for
every record of a request apart from the id and the card. A unit test holds the bytes equal
to ``StreamEnvelope.to_json_bytes()``.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from typing import Final

import pydantic_core

from cardstream_shared.contract import SCHEMA_VERSION, TransactionIn
from cardstream_shared.pan import CardToken

_EXCLUDE: Final = {"cc_num"}


def new_ingest_id() -> bytes:
    """A random UUID (version 4, RFC 9562 5.4) in canonical text form, as ASCII bytes.

    The same value ``str(uuid.uuid4())`` gives, without building a ``UUID`` object and
    formatting it through its integer (about a third of the cost).
    """
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}".encode()


class EnvelopeWriter:
    """Serializes stream envelopes for one request (one client, one ``received_at``)."""

    def __init__(self, *, client_id: str, received_at: dt.datetime) -> None:
        self._lineage = b"".join(
            (
                b',"received_at":',
                pydantic_core.to_json(received_at),
                b',"client_id":',
                pydantic_core.to_json(client_id),
                b',"card_token":"',
            )
        )
        self._schema = b',"schema_version":' + str(SCHEMA_VERSION).encode() + b',"ingest_id":"'
        self._key_versions: dict[str, bytes] = {}

    def to_json_bytes(
        self, txn: TransactionIn, card: CardToken, *, ingest_id: uuid.UUID | None = None
    ) -> bytes:
        """The envelope of ``txn`` with ``card`` in place of its PAN."""
        facts = txn.__pydantic_serializer__.to_json(txn, exclude=_EXCLUDE)
        key_version = self._key_versions.get(card.key_version)
        if key_version is None:
            key_version = pydantic_core.to_json(card.key_version)
            self._key_versions[card.key_version] = key_version
        return b"".join(
            (
                facts[:-1],
                self._schema,
                new_ingest_id() if ingest_id is None else str(ingest_id).encode(),
                b'"',
                self._lineage,
                # The token is hexadecimal and the last four are digits of a validated PAN:
                # neither needs JSON escaping.
                card.token.encode(),
                b'","card_last4":"',
                card.last4.encode(),
                b'","card_key_version":',
                key_version,
                b"}",
            )
        )
