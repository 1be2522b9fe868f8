"""Prometheus helpers shared by the services."""

from __future__ import annotations

from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

# Latency buckets in seconds, from a millisecond (an in-process coalesced put) to a minute
# (an object waiting in SQS behind a slow database).
LATENCY_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


def new_registry() -> CollectorRegistry:
    """A registry of its own per service instance, so tests can run several side by side."""
    return CollectorRegistry(auto_describe=True)


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """Body and content type of the ``/metrics`` response for ``registry``."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
