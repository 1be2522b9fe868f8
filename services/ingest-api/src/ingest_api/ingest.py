"""From decoded records to stream records and per-record results.

Records arrive decoded and validated by the shared door
(:mod:`cardstream_shared.transaction_input`); here each valid one has its card number
replaced by the keyed token before anything leaves the process, and is acknowledged only
with the receipt Kinesis gave it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal

import msgspec

from cardstream_shared.field_errors import FieldError
from cardstream_shared.pan import PanKeyring
from cardstream_shared.stream_records import EnvelopeWriter
from cardstream_shared.transaction_input import Outcome, Rejected, Transaction
from ingest_api.kinesis_producer import KinesisProducer, OutgoingRecord, Receipt
from ingest_api.metrics import IngestMetrics

Status = Literal["accepted", "rejected", "not_accepted"]


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


class Ingestor:
    """Validates, tokenizes and stores records for one service instance."""

    def __init__(
        self, *, keyring: PanKeyring, producer: KinesisProducer, metrics: IngestMetrics
    ) -> None:
        self._keyring = keyring
        self._producer = producer
        self._metrics = metrics

    def envelope(self, txn: Transaction, writer: EnvelopeWriter) -> OutgoingRecord:
        """The stream record of ``txn``: PAN tokenized, partitioned by card token so that
        one card's transactions stay in order on one shard."""
        card = self._keyring.tokenize(txn.cc_num)
        return OutgoingRecord(writer.to_json_bytes(txn, card), card.token)

    async def ingest_one(self, txn: Transaction, *, client_id: str) -> Receipt | None:
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
        self, outcomes: Sequence[Outcome], *, client_id: str
    ) -> list[RecordResult]:
        """Results for every record, in input order; valid ones are stored in Kinesis."""
        writer = EnvelopeWriter(client_id=client_id, received_at=dt.datetime.now(dt.UTC))
        writer.reserve_ids(len(outcomes))
        results: list[RecordResult] = []
        outgoing: list[OutgoingRecord] = []
        positions: list[int] = []
        first_seen: dict[str, int] = {}
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, Rejected):
                results.append(
                    RecordResult(index, outcome.trans_num, "rejected", errors=outcome.errors)
                )
                continue
            earlier = first_seen.get(outcome.trans_num)
            if earlier is not None:
                # trans_num is the idempotency key; a repeat inside one request is a client
                # error, reported rather than silently collapsed.
                error = FieldError(
                    "trans_num", f"duplicate of record {earlier} in this request", "duplicate"
                )
                results.append(RecordResult(index, outcome.trans_num, "rejected", errors=[error]))
                continue
            first_seen[outcome.trans_num] = index
            positions.append(len(results))
            results.append(RecordResult(index, outcome.trans_num, "accepted"))
            outgoing.append(self.envelope(outcome, writer))
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
