"""Per-caller rate limiting: one token bucket per caller, refilled continuously.

A bucket's rate and size are the limiter's own unless ``acquire`` is given the caller's
(each merchant's registry entry names its records per second and burst); a caller whose
limits change keeps its tokens, up to the new size.

The write routes charge a request as many tokens as it carries records, so one batch of
5,000 records and 5,000 single-record requests weigh the same against Kinesis's per-shard
write limits; the alert routes have a bucket of their own, one token a request.
Buckets of the least recently seen callers are dropped beyond ``max_clients``; a dropped
bucket comes back full, which errs towards letting an idle caller through."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from cardstream_shared.merchant_registry import MerchantEntry
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

    @property
    def burst(self) -> int:
        """The bucket size of a caller without limits of its own."""
        return int(self._burst)

    def acquire(
        self,
        client_id: str,
        cost: int = 1,
        *,
        rate_per_s: float | None = None,
        burst: int | None = None,
    ) -> float:
        """Take ``cost`` tokens from ``client_id``'s bucket, or say how long until it can;
        ``rate_per_s`` and ``burst`` replace the limiter's own for this caller."""
        rate = self._rate if rate_per_s is None else rate_per_s
        size = self._burst if burst is None else float(burst)
        now = self._clock()
        tokens, last = self._buckets.get(client_id, (size, now))
        tokens = min(size, tokens + (now - last) * rate)
        allowed = cost <= tokens
        self._buckets[client_id] = (tokens - cost if allowed else tokens, now)
        self._buckets.move_to_end(client_id)
        if len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        if allowed:
            return 0.0
        if cost > size:
            return math.inf
        return (cost - tokens) / rate

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        """``Retry-After`` in whole seconds (RFC 9110 10.2.3), at least 1."""
        return str(max(1, math.ceil(wait_s)))


def refuse_beyond_burst(
    limiter: TokenBucketLimiter, records: int, merchant: MerchantEntry | None
) -> None:
    """A 413 problem when ``records`` exceed what the caller's bucket ever holds: waiting
    would not help, so the request is refused outright instead of with ``Retry-After``."""
    burst = limiter.burst if merchant is None else merchant.burst
    if records > burst:
        raise ProblemError(
            413,
            "too-many-records",
            f"this client may send at most {burst} records at once (its burst); send fewer",
        )


def enforce(
    limiter: TokenBucketLimiter,
    key: str,
    cost: int,
    *,
    metrics: IngestMetrics,
    detail: str,
    merchant: MerchantEntry | None = None,
) -> None:
    """Charge ``key``'s bucket (at ``merchant``'s own rate and burst when given); a 429
    problem with ``Retry-After`` when it cannot pay."""
    if merchant is None:
        wait = limiter.acquire(key, cost)
    else:
        wait = limiter.acquire(
            key, cost, rate_per_s=merchant.records_per_second, burst=merchant.burst
        )
    if wait:
        metrics.rate_limited.inc()
        raise ProblemError(
            429,
            "rate-limited",
            detail,
            headers={"Retry-After": TokenBucketLimiter.retry_after_header(wait)},
        )
