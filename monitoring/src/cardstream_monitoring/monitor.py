"""What the loader plugs in: rules inside the load transaction, metrics and webhook after it.

Wiring (the loader's worker)::

    monitor = build_monitor(load_settings(RulesSettings), registry=registry)
    await monitor.start()
    result = await load_batch(pool, source, batch, partitions=p, hooks=[monitor.after_insert])
    monitor.after_commit(result)        # once load_batch returned: the commit happened
    ...
    await monitor.stop()

``after_insert`` runs the rules on the load's connection, before its commit, and keeps the
alerts it raised under the load's ``object_id``; ``after_commit`` then counts them, records
their latency and queues the high-severity ones for the webhook. A load attempt that rolled
back (the loader retries deadlocks with a fresh ledger row) never reaches ``after_commit``;
its entry is dropped when the pending map is full, oldest first.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram

from cardstream_monitoring.engine import RaisedAlert, RuleEngine
from cardstream_monitoring.notifier import WebhookNotifier
from cardstream_monitoring.rules import SEVERITIES, Rules, load_rules
from cardstream_monitoring.settings import RulesSettings
from cardstream_shared.metrics import LATENCY_BUCKETS

if TYPE_CHECKING:
    from cardstream_monitoring.engine import Connection

logger = logging.getLogger(__name__)

_MAX_PENDING: Final = 1_000


class LoadedObject(Protocol):
    """What the monitor reads of a load (the db-loader's ``LoadResult``)."""

    @property
    def object_id(self) -> int | None:
        """The ledger id of the loaded object; None when nothing was loaded."""

    @property
    def inserted_trans_nums(self) -> Sequence[str]:
        """The transactions this load inserted."""

    @property
    def committed_at(self) -> dt.datetime | None:
        """When the load's transaction committed; None before."""


class AlertMonitor:
    """Rule evaluation hooked into the loader, with its metrics and optional notifier."""

    def __init__(
        self,
        rules: Rules,
        *,
        registry: CollectorRegistry,
        notifier: WebhookNotifier | None = None,
        notify_min_severity: str = "high",
    ) -> None:
        self.engine = RuleEngine(rules)
        self._notifier = notifier
        self._notify_rank = SEVERITIES.index(notify_min_severity)
        self._pending: dict[int, list[RaisedAlert]] = {}
        self.alerts = Counter(
            "cardstream_loader_alerts",
            "Alerts raised, by rule and severity.",
            ["rule", "severity"],
            registry=registry,
        )
        self.evaluation_seconds = Histogram(
            "cardstream_loader_rules_seconds",
            "Time spent evaluating the rules inside one load transaction.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.commit_to_alert = Histogram(
            "cardstream_loader_commit_to_alert_seconds",
            "From the load that stored the alerted transaction (its loaded_at, the start of"
            " that load's transaction) to the commit of the alert. Alerts on the rows of the"
            " current load commit with them; burst alerts on earlier rows measure the wait"
            " for the burst to complete.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ingest_to_alert = Histogram(
            "cardstream_loader_ingest_to_alert_seconds",
            "From ingest-api accepting the alerted transaction (received_at) to the commit of"
            " its alert: the whole pipeline's alerting delay.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    async def start(self) -> None:
        """Start the notifier's workers, if there is a notifier."""
        if self._notifier is not None:
            await self._notifier.start()

    async def stop(self) -> None:
        """Deliver queued notifications (bounded wait) and stop."""
        if self._notifier is not None:
            await self._notifier.stop()

    async def after_insert(self, conn: Connection, result: LoadedObject) -> None:
        """The loader's after-insert hook: evaluate the rules on the rows just inserted."""
        if not self.engine.active or not result.inserted_trans_nums or result.object_id is None:
            return
        started = time.perf_counter()
        raised = await self.engine.evaluate(conn, result.inserted_trans_nums)
        self.evaluation_seconds.observe(time.perf_counter() - started)
        if raised:
            while len(self._pending) >= _MAX_PENDING:
                del self._pending[next(iter(self._pending))]
            self._pending[result.object_id] = raised

    def after_commit(self, result: LoadedObject) -> list[RaisedAlert]:
        """Account for the alerts the committed load raised; returns them."""
        if result.object_id is None:
            return []
        raised = self._pending.pop(result.object_id, [])
        if not raised:
            return []
        committed_at = result.committed_at
        for alert in raised:
            self.alerts.labels(rule=alert.rule, severity=alert.severity).inc()
            if committed_at is not None:
                self.commit_to_alert.observe(
                    max(0.0, (committed_at - alert.loaded_at).total_seconds())
                )
                self.ingest_to_alert.observe(
                    max(0.0, (committed_at - alert.received_at).total_seconds())
                )
            if self._notifier is not None and self._notifies(alert.severity):
                self._notifier.submit(alert.notice())
        return raised

    def _notifies(self, severity: str) -> bool:
        return severity in SEVERITIES and SEVERITIES.index(severity) >= self._notify_rank


def build_monitor(settings: RulesSettings, *, registry: CollectorRegistry) -> AlertMonitor | None:
    """The monitor the settings describe, or None when the rules are switched off.

    Raises :class:`cardstream_monitoring.rules.RuleConfigError` for a bad rule file, which the
    loader should treat like any other invalid setting: refuse to start.
    """
    if not settings.rules_enabled:
        return None
    rules = load_rules(settings.rules_path)
    notifier = None
    if settings.alert_webhook_url is not None and settings.alert_webhook_secret is not None:
        notifier = WebhookNotifier(
            str(settings.alert_webhook_url),
            settings.alert_webhook_secret.get_secret_value().encode(),
            registry=registry,
            max_attempts=settings.alert_webhook_max_attempts,
            backoff_base_s=settings.alert_webhook_backoff_base_s,
            backoff_max_s=settings.alert_webhook_backoff_max_s,
            timeout_s=settings.alert_webhook_timeout_s,
            queue_size=settings.alert_webhook_queue_size,
            workers=settings.alert_webhook_workers,
        )
    logger.info(
        "monitoring rules enabled",
        extra={"rules": rules.enabled(), "webhook": notifier is not None},
    )
    return AlertMonitor(
        rules,
        registry=registry,
        notifier=notifier,
        notify_min_severity=settings.alert_notify_min_severity,
    )
