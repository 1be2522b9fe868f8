"""Stream records as ingest-api writes them, made from plain rows (test data for the
stream-writer, the db-loader and the alert rules)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from cardstream_shared.contract import StreamEnvelope, TransactionIn
from cardstream_shared.pan import PanKeyring


def stream_line(
    row: Mapping[str, Any],
    keyring: PanKeyring,
    *,
    client_id: str = "merchant-1",
    received_at: dt.datetime | None = None,
) -> bytes:
    """The stream record of ``row`` (which must be valid), its ingest id derived from its
    ``trans_num`` so that the same row always gives the same bytes."""
    txn = TransactionIn.model_validate(row)
    envelope = StreamEnvelope.from_transaction(
        txn,
        keyring.tokenize(txn.cc_num),
        client_id=client_id,
        received_at=received_at or dt.datetime.now(dt.UTC),
        ingest_id=uuid.uuid5(uuid.NAMESPACE_URL, f"cardstream-test:{txn.trans_num}"),
    )
    return envelope.to_json_bytes()
