"""Prometheus metrics of one db-loader process (the names are a team contract)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cardstream_shared.metrics import LATENCY_BUCKETS, new_registry
from db_loader.loader import LoadResult

# Object creation to commit spans SQS waits and retries: up to an hour is worth resolving.
LAG_BUCKETS = (*LATENCY_BUCKETS, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class LoaderMetrics:
    """The loader's metrics, on a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or new_registry()
        r = self.registry
        self.rows = Counter(
            "cardstream_loader_rows",
            "Source rows by outcome: loaded (new), duplicate (already stored or repeated in "
            "the object), quarantined.",
            ["outcome"],
            registry=r,
        )
        self.labels_updated = Counter(
            "cardstream_loader_labels_updated",
            "Stored transactions whose fraud label a later record changed.",
            registry=r,
        )
        self.objects = Counter(
            "cardstream_loader_objects",
            "Objects by outcome: loaded, already_loaded, unreadable, failed.",
            ["outcome"],
            registry=r,
        )
        self.unreadable = Counter(
            "cardstream_loader_unreadable_objects",
            "Objects that could not be read, by reason (missing, too_large, not_gzip ...).",
            ["reason"],
            registry=r,
        )
        self.messages = Counter(
            "cardstream_loader_messages",
            "SQS messages by outcome: deleted (all records committed), ignored (s3:TestEvent), "
            "retried (left for redelivery), dead_lettered (last receive before the DLQ).",
            ["outcome"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "cardstream_loader_batch_seconds",
            "Time to load one object: read, validate and commit.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lag_seconds = Histogram(
            "cardstream_loader_lag_seconds",
            "From the object's creation (S3 eventTime) to the commit of its rows.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "cardstream_loader_messages_in_flight", "Messages being worked on.", registry=r
        )
        self.visibility_extensions = Counter(
            "cardstream_loader_visibility_extensions",
            "ChangeMessageVisibility calls made while working.",
            registry=r,
        )

    def record(self, result: LoadResult) -> None:
        """Count what one load did."""
        if result.already_loaded:
            self.objects.labels("already_loaded").inc()
            return
        self.objects.labels("loaded").inc()
        self.rows.labels("loaded").inc(result.inserted_count)
        self.rows.labels("duplicate").inc(result.duplicate_count)
        self.rows.labels("quarantined").inc(result.quarantined_count)
        self.labels_updated.inc(len(result.relabelled_trans_nums))
        if result.committed_at is not None and result.source.event_time is not None:
            lag = (result.committed_at - result.source.event_time).total_seconds()
            self.lag_seconds.observe(max(lag, 0.0))
