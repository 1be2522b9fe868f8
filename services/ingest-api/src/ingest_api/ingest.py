"""From parsed records to stream records and per-record results.

Each record is validated on its own (one bad record never costs the others), its card
number is replaced by the keyed token before anything leaves the process, and it is
acknowledged only with the receipt Kinesis gave it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sized
from typing import Any, Final, Literal

import msgspec

from cardstream_shared.canonical_transactions import CanonicalTransaction
from cardstream_shared.contract import TRANS_NUM_PATTERN, TransactionIn
from cardstream_shared.pan import PanKeyring
from cardstream_shared.parsers import FieldError, RawRecord, validate
from cardstream_shared.redaction import redact_text
from ingest_api.envelope import EnvelopeWriter
from ingest_api.kinesis_producer import KinesisProducer, OutgoingRecord, Receipt
from ingest_api.metrics import IngestMetrics

Status = Literal["accepted", "rejected", "not_accepted"]

_TRANS_NUM: Final = re.compile(TRANS_NUM_PATTERN)


class RecordResult(msgspec.Struct, omit_defaults=True):
    """What happened to one record of a request; encoded as it is, it is the batch result
    entry of the team contract (``models.BatchResult``): the receipt's two fields for an
    accepted record, the errors for a rejected one, neither otherwise."""

    index: int
    trans_num: str | None
    status: Status
    shard_id: str | None = None
    sequence_number: str | None = None
    errors: list[FieldError] = []


def echoable_trans_num(data: dict[str, Any] | None) -> str | None:
    """The record's ``trans_num`` if it is safe to repeat in a response, else None.

    A rejected record's id is echoed so the caller can match results, but only when it has
    the shape of an id and does not look like a card number.
    """
    if not data:
        return None
    value = data.get("trans_num")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not _TRANS_NUM.match(value) or redact_text(value) != value:
        return None
    return value


class Ingestor:
    """Validates, tokenizes and stores records for one service instance."""

    def __init__(
        self, *, keyring: PanKeyring, producer: KinesisProducer, metrics: IngestMetrics
    ) -> None:
        self._keyring = keyring
        self._producer = producer
        self._metrics = metrics

    def envelope(
        self, txn: TransactionIn | CanonicalTransaction, writer: EnvelopeWriter
    ) -> OutgoingRecord:
        """The stream record of ``txn``: PAN tokenized, partitioned by card token so that
        one card's transactions stay in order on one shard."""
        card = self._keyring.tokenize(txn.cc_num)
        return OutgoingRecord(writer.to_json_bytes(txn, card), card.token)

    async def ingest_one(
        self, txn: TransactionIn | CanonicalTransaction, *, client_id: str
    ) -> Receipt | None:
        """Store one valid transaction (coalesced with concurrent requests)."""
        writer = EnvelopeWriter(client_id=client_id, received_at=dt.datetime.now(dt.UTC))
        record = self.envelope(txn, writer)
        receipt = await self._producer.put_record(record)
        self._count(accepted=1 if receipt else 0, not_accepted=0 if receipt else 1)
        return receipt

    def reject(self, errors: list[FieldError]) -> None:
        """Count one rejected record."""
        reason = errors[0].type if errors else "invalid"
        self._metrics.records.labels(outcome="rejected", reason=reason).inc()

    async def ingest_many(
        self, raw_records: Iterable[RawRecord], *, client_id: str
    ) -> list[RecordResult]:
        """Results for every record, in input order; valid ones are stored in Kinesis."""
        writer = EnvelopeWriter(client_id=client_id, received_at=dt.datetime.now(dt.UTC))
        if isinstance(raw_records, Sized):
            writer.reserve_ids(len(raw_records))
        results: list[RecordResult] = []
        outgoing: list[OutgoingRecord] = []
        positions: list[int] = []
        first_seen: dict[str, int] = {}
        for raw in raw_records:
            checked: TransactionIn | CanonicalTransaction | list[FieldError]
            if raw.canonical is not None:
                checked = raw.canonical
            elif raw.data is None:
                results.append(RecordResult(raw.index, None, "rejected", errors=raw.errors))
                continue
            else:
                checked = validate(raw.data)
            if isinstance(checked, list):
                results.append(
                    RecordResult(
                        raw.index, echoable_trans_num(raw.data), "rejected", errors=checked
                    )
                )
                continue
            earlier = first_seen.get(checked.trans_num)
            if earlier is not None:
                # trans_num is the idempotency key; a repeat inside one request is a client
                # error, reported rather than silently collapsed.
                error = FieldError(
                    "trans_num", f"duplicate of record {earlier} in this request", "duplicate"
                )
                results.append(
                    RecordResult(raw.index, checked.trans_num, "rejected", errors=[error])
                )
                continue
            first_seen[checked.trans_num] = raw.index
            positions.append(len(results))
            results.append(RecordResult(raw.index, checked.trans_num, "accepted"))
            outgoing.append(self.envelope(checked, writer))
        receipts = await self._producer.put_records(outgoing) if outgoing else []
        for position, receipt in zip(positions, receipts, strict=True):
            result = results[position]
            if receipt is None:
                result.status = "not_accepted"
            else:
                result.shard_id = receipt.shard_id
                result.sequence_number = receipt.sequence_number
        for result in results:
            if result.status == "rejected":
                self.reject(result.errors)
        accepted = sum(1 for r in receipts if r is not None)
        self._count(accepted=accepted, not_accepted=len(receipts) - accepted)
        return results

    def _count(self, *, accepted: int, not_accepted: int) -> None:
        if accepted:
            self._metrics.records.labels(outcome="accepted", reason="").inc(accepted)
        if not_accepted:
            self._metrics.records.labels(outcome="not_accepted", reason="kinesis").inc(not_accepted)
