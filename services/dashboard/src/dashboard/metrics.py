"""The dashboard's Prometheus metrics, on a registry of their own per app instance."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram

from cardstream_shared.metrics import LATENCY_BUCKETS, new_registry


@dataclass
class DashboardMetrics:
    """Every metric the dashboard exports."""

    registry: CollectorRegistry = field(default_factory=new_registry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "cardstream_dashboard_requests_total",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.auth_refusals = Counter(
            "cardstream_dashboard_auth_refusals_total",
            "Requests refused for a missing or invalid token (401) or a missing scope (403).",
            ["status"],
            registry=r,
        )
        self.snapshot_seconds = Histogram(
            "cardstream_dashboard_snapshot_duration_seconds",
            "Time to read every panel from the analytics views in one snapshot.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.source_errors = Counter(
            "cardstream_dashboard_source_errors_total",
            "Failed reads of a data source: database, queue, dlq, stream, stream_lag,"
            " quarantine_objects.",
            ["source"],
            registry=r,
        )
