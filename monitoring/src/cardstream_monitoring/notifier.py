"""Signed webhook for high-severity alerts, delivered off the load path.

``submit`` never waits: alerts go into a bounded in-process queue that a few workers drain,
so a slow or dead receiver can delay notifications but never a load (the alert itself is
already committed in PostgreSQL and visible through the API and the dashboard; the webhook
is a courtesy push). When the queue is full the newest notification is dropped and counted.

Each delivery is signed like Stripe's and GitHub's webhooks: ``X-Cardstream-Signature:
sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`` with the timestamp in
``X-Cardstream-Timestamp``, so a receiver can check both origin and freshness (replay). The
delivery id is stable per alert, so a receiver can drop the duplicates that retries make.
Connection errors, timeouts, 429 and 5xx are retried with capped exponential backoff and
full jitter; any other answer is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import msgspec
from prometheus_client import CollectorRegistry, Counter

logger = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-Cardstream-Signature"
TIMESTAMP_HEADER: Final = "X-Cardstream-Timestamp"
DELIVERY_HEADER: Final = "X-Cardstream-Delivery"
_RETRYABLE_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """Receiver side: True when ``signature`` matches (constant-time comparison)."""
    try:
        expected = sign(secret, int(timestamp), body)
    except ValueError:
        return False
    return hmac.compare_digest(expected, signature)


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """What a receiver learns about an alert: no card number, no personal data."""

    alert_id: int
    rule: str
    severity: str
    score: float
    trans_num: str
    card_masked: str
    evidence: Mapping[str, Any]
    created_at: str

    def body(self) -> bytes:
        """JSON body of the webhook request."""
        return msgspec.json.encode(
            {
                "type": "cardstream.alert",
                "alert_id": self.alert_id,
                "rule": self.rule,
                "severity": self.severity,
                "score": self.score,
                "trans_num": self.trans_num,
                "card_masked": self.card_masked,
                "evidence": dict(self.evidence),
                "created_at": self.created_at,
            }
        )


class WebhookNotifier:
    """Delivers :class:`AlertNotice` objects to one URL, signed, retried, never blocking."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        registry: CollectorRegistry,
        max_attempts: int = 5,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 10.0,
        timeout_s: float = 5.0,
        queue_size: int = 1_000,
        workers: int = 2,
    ) -> None:
        if not secret:
            raise ValueError("a webhook needs a signing secret")
        self._url = url
        self._secret = secret
        self._max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._queue: asyncio.Queue[AlertNotice] = asyncio.Queue(maxsize=queue_size)
        self._worker_count = workers
        self._workers: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._outcomes = Counter(
            "cardstream_loader_alert_notifications",
            "Alert webhook notifications by outcome (delivered, failed, dropped).",
            ["outcome"],
            registry=registry,
        )

    async def start(self) -> None:
        """Open the HTTP session and start the delivery workers."""
        # Redirects are not followed: the signed body goes only to the configured URL.
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        self._workers = [
            asyncio.create_task(self._work(), name=f"alert-webhook-{n}")
            for n in range(self._worker_count)
        ]

    def submit(self, notice: AlertNotice) -> bool:
        """Queue ``notice`` for delivery; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(notice)
        except asyncio.QueueFull:
            self._outcomes.labels(outcome="dropped").inc()
            logger.warning(
                "alert notification dropped: queue full", extra={"alert_id": notice.alert_id}
            )
            return False
        return True

    async def stop(self, *, drain_timeout_s: float = 5.0) -> None:
        """Deliver what is queued (for at most ``drain_timeout_s``), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_timeout_s)
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _work(self) -> None:
        while True:
            notice = await self._queue.get()
            try:
                delivered = await self.deliver(notice)
                self._outcomes.labels(outcome="delivered" if delivered else "failed").inc()
            finally:
                self._queue.task_done()

    def _backoff(self, attempt: int) -> float:
        # Full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter"): retries of
        # many alerts after an outage do not arrive at the receiver in lockstep.
        return random.uniform(0, min(self._backoff_max_s, self._backoff_base_s * 2**attempt))

    async def deliver(self, notice: AlertNotice) -> bool:
        """Send one notice, retrying transient failures; True once the receiver took it."""
        assert self._session is not None, "start() first"
        body = notice.body()
        for attempt in range(self._max_attempts):
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: sign(self._secret, timestamp, body),
                DELIVERY_HEADER: f"alert-{notice.alert_id}",
            }
            try:
                async with self._session.post(
                    self._url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                logger.warning(
                    "alert webhook attempt failed",
                    extra={
                        "alert_id": notice.alert_id,
                        "attempt": attempt + 1,
                        "error": type(exc).__name__,
                    },
                )
            else:
                if 200 <= status < 300:
                    return True
                if status not in _RETRYABLE_STATUS:
                    logger.error(
                        "alert webhook refused the notification",
                        extra={"alert_id": notice.alert_id, "status": status},
                    )
                    return False
                logger.warning(
                    "alert webhook answered a retryable status",
                    extra={"alert_id": notice.alert_id, "attempt": attempt + 1, "status": status},
                )
            if attempt + 1 < self._max_attempts:
                await asyncio.sleep(self._backoff(attempt))
        logger.error(
            "alert webhook gave up",
            extra={"alert_id": notice.alert_id, "attempts": self._max_attempts},
        )
        return False
