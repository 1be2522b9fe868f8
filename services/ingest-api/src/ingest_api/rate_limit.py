"""Per-caller rate limiting: one token bucket per caller, refilled continuously.

The write routes charge a request as many tokens as it carries records, so one batch of
5,000 records and 5,000 single-record requests weigh the same against Kinesis's per-shard
write limits; the alert routes have a bucket of their own, one token a request.
Buckets of the least recently seen callers are dropped beyond ``max_clients``; a dropped
bucket comes back full, which errs towards letting an idle caller through.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from ingest_api.metrics import IngestMetrics
from ingest_api.problems import ProblemError


class TokenBucketLimiter:
    """``acquire`` answers 0 when the request may go ahead, else seconds to wait."""

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int,
        max_clients: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate_per_s, burst and max_clients must be positive")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._max_clients = max_clients
        self._clock = clock
        # client id -> (tokens, time of last refill)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, client_id: str, cost: int = 1) -> float:
        """Take ``cost`` tokens from ``client_id``'s bucket, or say how long until it can."""
        now = self._clock()
        tokens, last = self._buckets.get(client_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        allowed = cost <= tokens
        self._buckets[client_id] = (tokens - cost if allowed else tokens, now)
        self._buckets.move_to_end(client_id)
        if len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        if allowed:
            return 0.0
        if cost > self._burst:
            return math.inf
        return (cost - tokens) / self._rate

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        """``Retry-After`` in whole seconds (RFC 9110 10.2.3), at least 1."""
        return str(max(1, math.ceil(wait_s)))


def enforce(
    limiter: TokenBucketLimiter, key: str, cost: int, *, metrics: IngestMetrics, detail: str
) -> None:
    """Charge ``key``'s bucket; a 429 problem with ``Retry-After`` when it cannot pay."""
    wait = limiter.acquire(key, cost)
    if wait:
        metrics.rate_limited.inc()
        raise ProblemError(
            429,
            "rate-limited",
            detail,
            headers={"Retry-After": TokenBucketLimiter.retry_after_header(wait)},
        )
