"""ingest-api's Prometheus metrics, on a registry of their own per app instance."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cardstream_shared.metrics import LATENCY_BUCKETS, new_registry


@dataclass
class IngestMetrics:
    """Every metric the service exports; names are part of the team contract."""

    registry: CollectorRegistry = field(default_factory=new_registry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "cardstream_ingest_requests_total",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.requests_in_progress = Gauge(
            "cardstream_ingest_requests_in_progress",
            "HTTP requests received and not yet answered (drains to 0 on shutdown).",
            registry=r,
        )
        self.request_latency = Histogram(
            "cardstream_ingest_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.records = Counter(
            "cardstream_ingest_records_total",
            "Records by outcome; reason is the first error type of a rejected record.",
            ["outcome", "reason"],
            registry=r,
        )
        self.kinesis_calls = Counter(
            "cardstream_ingest_kinesis_calls_total",
            "PutRecords calls by outcome (ok, partial, or the error code).",
            ["outcome"],
            registry=r,
        )
        self.kinesis_retried_records = Counter(
            "cardstream_ingest_kinesis_retried_records_total",
            "Records resent to Kinesis, by the reason of the failure.",
            ["reason"],
            registry=r,
        )
        self.kinesis_latency = Histogram(
            "cardstream_ingest_kinesis_put_duration_seconds",
            "Duration of PutRecords calls that returned an answer.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.coalesced_group_size = Histogram(
            "cardstream_ingest_coalesced_group_records",
            "Single-record requests sharing one PutRecords call.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 500),
            registry=r,
        )
        self.auth_refusals = Counter(
            "cardstream_ingest_auth_refusals_total",
            "Requests refused by authentication (401) or authorization (403).",
            ["status"],
            registry=r,
        )
        self.rate_limited = Counter(
            "cardstream_ingest_rate_limited_total",
            "Requests refused with 429.",
            registry=r,
        )
