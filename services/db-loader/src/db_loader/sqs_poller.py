"""SQS consumption: long polling, bounded concurrency, visibility heartbeat, delete after commit.

S3 event notifications are at-least-once and unordered (docs/architecture.md, hop 4), may
carry several records, encode object keys in URL form (``+`` for a space), and start with
an ``s3:TestEvent`` message. A message is deleted only once every object it names is
committed; one that fails is left alone, so it becomes visible again and, after the
queue's maxReceiveCount receives, the redrive policy moves it to the DLQ. The loader never
deletes a message it could not load.

Every receive counts towards the DLQ, whatever the reason the load failed. When the
failure is no message's fault (the database is away: restarting, failing over), receiving
more would only spend the receives of good messages until they are dead-lettered, so the
poller stops receiving until the database answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import unquote_plus

from db_loader.ledger import SourceObject
from db_loader.metrics import LoaderMetrics
from db_loader.settings import LoaderSettings

logger = logging.getLogger(__name__)

Handler = Callable[[SourceObject], Awaitable[None]]
_TEST_EVENT: Final = "s3:TestEvent"
# How often a poller that stopped receiving asks whether the database answers again.
_AVAILABLE_PROBE_S: Final = 1.0


class PoisonMessageError(ValueError):
    """The message body is not an S3 event notification we can act on."""


class DependencyUnavailableError(Exception):
    """Something every message needs (the database) is away: no message is at fault."""


def _event_time(text: Any) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def parse_message(body: str) -> list[SourceObject]:
    """The objects an SQS message body names; empty for ``s3:TestEvent``.

    Accepts S3's own notification and the same wrapped in an SNS envelope.
    """
    try:
        document = json.loads(body)
    except ValueError:
        raise PoisonMessageError("message body is not JSON") from None
    if not isinstance(document, dict):
        raise PoisonMessageError("message body is not a JSON object")
    if document.get("Type") == "Notification" and isinstance(document.get("Message"), str):
        return parse_message(document["Message"])
    if document.get("Event") == _TEST_EVENT:
        return []
    records = document.get("Records")
    if not isinstance(records, list):
        raise PoisonMessageError("message has no Records")
    objects = []
    for record in records:
        try:
            name = str(record["eventName"])
            s3 = record["s3"]
            bucket = str(s3["bucket"]["name"])
            item = s3["object"]
            key = unquote_plus(str(item["key"]))
        except (KeyError, TypeError):
            raise PoisonMessageError("record is not an S3 event record") from None
        if not name.startswith("ObjectCreated"):
            continue
        size = item.get("size")
        objects.append(
            SourceObject(
                bucket=bucket,
                key=key,
                etag=str(item.get("eTag") or "").strip('"'),
                size_bytes=int(size) if isinstance(size, int) else None,
                event_time=_event_time(record.get("eventTime")),
                version_id=item.get("versionId") or None,
            )
        )
    return objects


class SqsPoller:
    """Receives messages and hands each object to ``handler``, at most ``concurrency`` at once."""

    def __init__(
        self,
        settings: LoaderSettings,
        sqs: Any,
        handler: Handler,
        metrics: LoaderMetrics,
        *,
        available: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._settings = settings
        self._sqs = sqs
        self._handler = handler
        self._metrics = metrics
        # Asked, after a DependencyUnavailableError, until it says True; then receiving goes on.
        self._available = available
        self._unavailable = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self.receiving = False

    @property
    def paused(self) -> bool:
        """Whether receiving stopped until the database answers again."""
        return self._unavailable.is_set()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set, then let messages in progress finish (bounded)."""
        self.receiving = True
        try:
            while not stop.is_set():
                if self._unavailable.is_set():
                    await self._until_available(stop)
                    continue
                await self._slots.acquire()
                free = 1
                # Take every free slot for this receive, so one call can fill them all.
                while free < self._settings.max_messages and not self._slots.locked():
                    await self._slots.acquire()
                    free += 1
                messages = await self._receive(free, stop)
                for _ in range(free - len(messages)):
                    self._slots.release()
                for message in messages:
                    task = asyncio.create_task(self._process(message))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            self.receiving = False
            await self._drain()

    async def _receive(self, count: int, stop: asyncio.Event) -> list[dict[str, Any]]:
        receive = asyncio.ensure_future(
            self._sqs.receive_message(
                QueueUrl=self._settings.queue_url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=self._settings.wait_time_s,
                VisibilityTimeout=self._settings.visibility_timeout_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        )
        stopped = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait({receive, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if receive not in done:
            # Shutting down: a message received after this point would only wait for its
            # visibility timeout, so the long poll is abandoned.
            receive.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receive
            return []
        try:
            response = receive.result()
        except Exception:
            logger.exception("ReceiveMessage failed; retrying")
            await asyncio.sleep(self._settings.retry_delay_s)
            return []
        messages: list[dict[str, Any]] = response.get("Messages", [])
        if not messages and self._settings.wait_time_s == 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.empty_receive_pause_s)
        return messages

    async def _until_available(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self._available is None or await self._available():
                self._unavailable.clear()
                logger.info("the database answers again; receiving")
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _AVAILABLE_PROBE_S)

    async def _drain(self) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=self._settings.shutdown_grace_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _heartbeat(self, receipt: str) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_s)
            try:
                await self._sqs.change_message_visibility(
                    QueueUrl=self._settings.queue_url,
                    ReceiptHandle=receipt,
                    VisibilityTimeout=self._settings.visibility_timeout_s,
                )
                self._metrics.visibility_extensions.inc()
            except Exception:
                # The receipt may be stale (the message reappeared and was taken by another
                # loader); the ledger then makes one of the two loads a no-op.
                logger.warning("could not extend message visibility", exc_info=True)

    async def _process(self, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        heartbeat = asyncio.create_task(self._heartbeat(receipt))
        self._metrics.in_flight.inc()
        try:
            objects = parse_message(message.get("Body", ""))
            for source in objects:
                await self._handler(source)
        except DependencyUnavailableError as exc:
            heartbeat.cancel()
            self._metrics.messages.labels("deferred").inc()
            if not self._unavailable.is_set():
                self._unavailable.set()
                logger.warning(
                    "stopped receiving until the database answers; message left for redelivery",
                    extra={"message_id": message.get("MessageId"), "detail": str(exc)[:500]},
                )
            await self._retry_soon(receipt)
        except Exception as exc:
            heartbeat.cancel()
            self._failed(message, receives, exc)
            await self._retry_soon(receipt)
        else:
            heartbeat.cancel()
            await self._delete(receipt)
            self._metrics.messages.labels("ignored" if not objects else "deleted").inc()
        finally:
            self._metrics.in_flight.dec()
            self._slots.release()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _delete(self, receipt: str) -> None:
        try:
            await self._sqs.delete_message(QueueUrl=self._settings.queue_url, ReceiptHandle=receipt)
        except Exception:
            # Committed already: the redelivered message will find the ledger row and no-op.
            logger.warning("could not delete a loaded message", exc_info=True)

    def _failed(self, message: dict[str, Any], receives: int, exc: Exception) -> None:
        last = receives >= self._settings.max_receive_count
        self._metrics.messages.labels("dead_lettered" if last else "retried").inc()
        text = (
            "message failed on its last receive; the redrive policy moves it to the DLQ"
            if last
            else "message failed; left for redelivery"
        )
        logger.error(
            text,
            extra={
                "message_id": message.get("MessageId"),
                "receive_count": receives,
                "error": type(exc).__name__,
                "detail": str(exc)[:500],
            },
        )

    async def _retry_soon(self, receipt: str) -> None:
        # Without this the message would wait out the whole visibility timeout before its
        # next attempt; the receive count (and so the DLQ) still advances per attempt.
        try:
            await self._sqs.change_message_visibility(
                QueueUrl=self._settings.queue_url,
                ReceiptHandle=receipt,
                VisibilityTimeout=int(self._settings.retry_delay_s),
            )
        except Exception:
            logger.warning("could not shorten message visibility", exc_info=True)
