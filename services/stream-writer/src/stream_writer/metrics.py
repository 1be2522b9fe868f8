"""Prometheus metrics of one stream-writer worker (names are a team contract)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cardstream_shared.metrics import LATENCY_BUCKETS, new_registry


class WriterMetrics:
    """The worker's metrics, on a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or new_registry()
        r = self.registry
        self.records_in = Counter(
            "cardstream_writer_records_in", "Records read from Kinesis.", registry=r
        )
        self.records_out = Counter(
            "cardstream_writer_records_out",
            "Records written to S3, by destination.",
            ["destination"],
            registry=r,
        )
        self.millis_behind_latest = Gauge(
            "cardstream_writer_millis_behind_latest",
            "MillisBehindLatest of the last GetRecords call, per owned shard.",
            ["shard_id"],
            registry=r,
        )
        self.flushes = Counter(
            "cardstream_writer_flushes", "Batches flushed, by trigger.", ["trigger"], registry=r
        )
        self.s3_put_seconds = Histogram(
            "cardstream_writer_s3_put_seconds",
            "Latency of conditional S3 puts.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.objects = Counter(
            "cardstream_writer_objects",
            "Conditional puts by outcome (created, already_written).",
            ["outcome"],
            registry=r,
        )
        self.leases_held = Gauge(
            "cardstream_writer_leases_held", "Leases this worker holds.", registry=r
        )
        self.lease_takes = Counter(
            "cardstream_writer_lease_takes", "Expired or unowned leases taken.", registry=r
        )
        self.lease_steals = Counter(
            "cardstream_writer_lease_steals", "Live leases stolen to balance load.", registry=r
        )
        self.leases_lost = Counter(
            "cardstream_writer_leases_lost",
            "Leases lost because a conditional write was refused.",
            registry=r,
        )
        self.throttles = Counter(
            "cardstream_writer_read_throttles",
            "GetRecords calls refused with ProvisionedThroughputExceeded.",
            registry=r,
        )
