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
import uuid
from typing import Final

import pydantic_core

from cardstream_shared.contract import SCHEMA_VERSION, TransactionIn
from cardstream_shared.pan import CardToken

_EXCLUDE: Final = {"cc_num"}


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

    def to_json_bytes(
        self, txn: TransactionIn, card: CardToken, *, ingest_id: uuid.UUID | None = None
    ) -> bytes:
        """The envelope of ``txn`` with ``card`` in place of its PAN."""
        facts = txn.__pydantic_serializer__.to_json(txn, exclude=_EXCLUDE)
        return b"".join(
            (
                facts[:-1],
                self._schema,
                str(ingest_id or uuid.uuid4()).encode(),
                b'"',
                self._lineage,
                card.token.encode(),
                b'","card_last4":',
                pydantic_core.to_json(card.last4),
                b',"card_key_version":',
                pydantic_core.to_json(card.key_version),
                b"}",
            )
        )
