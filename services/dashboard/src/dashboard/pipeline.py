"""Pipeline health from outside the database: stream lag, queue backlog, DLQ, quarantine.

Each source is read concurrently with its own timeout; a source that cannot be read is
reported as unavailable on the page (and counted in a metric) instead of failing the whole
dashboard, because the panels that do answer are what an operator needs most when
something is broken.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cardstream_shared import resource_names as names
from dashboard.metrics import DashboardMetrics
from dashboard.settings import DashboardSettings

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

WRITER_LAG_METRIC = "cardstream_writer_millis_behind_latest"
# Without writer URLs (in AWS the writers' tasks are not addressable), the stream's own
# metric: the age of the last record any consumer's GetRecords returned, per minute.
ITERATOR_AGE_METRIC = "GetRecords.IteratorAgeMilliseconds"
_ITERATOR_AGE_WINDOW = dt.timedelta(minutes=10)
# ListObjectsV2 returns at most 1,000 keys per call; past that the page says "1000+".
_QUARANTINE_LIST_MAX = 1000


@dataclass
class PipelineProbe:
    """Reads the pipeline's AWS resources and the stream lag (writers' gauges or CloudWatch)."""

    settings: DashboardSettings
    metrics: DashboardMetrics
    sqs: Any | None
    kinesis: Any | None
    s3: Any | None
    cloudwatch: Any | None
    http: httpx.AsyncClient

    async def read(self) -> tuple[JsonDict, list[str]]:
        """The pipeline panel and the names of the sources that could not be read."""
        probes: dict[str, Callable[[], Awaitable[Any]]] = {
            "queue": self._queue,
            "dlq": self._dlq,
            "stream": self._stream,
            "stream_lag": self._stream_lag,
            "quarantine_objects": self._quarantine_objects,
        }
        results = await asyncio.gather(
            *(self._bounded(name, probe) for name, probe in probes.items())
        )
        panel = dict(zip(probes, results, strict=True))
        failed = [name for name, value in panel.items() if value == "unavailable"]
        return panel, failed

    async def _bounded(self, name: str, probe: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await asyncio.wait_for(probe(), timeout=self.settings.probe_timeout_s)
        # Any failure of one source is shown as such; the other panels still answer.
        except Exception as exc:
            self.metrics.source_errors.labels(source=name).inc()
            logger.warning(
                "pipeline source unavailable",
                extra={"source": name, "error": type(exc).__name__},
            )
            return "unavailable"

    async def _queue_depth(self, url: str) -> JsonDict:
        assert self.sqs is not None
        response = await self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )
        attributes = response.get("Attributes", {})
        return {
            "waiting": int(attributes.get("ApproximateNumberOfMessages", 0)),
            "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        }

    async def _queue(self) -> JsonDict | None:
        if self.sqs is None or not self.settings.queue_url:
            return None
        return await self._queue_depth(self.settings.queue_url)

    async def _dlq(self) -> JsonDict | None:
        if self.sqs is None or not self.settings.dlq_url:
            return None
        return await self._queue_depth(self.settings.dlq_url)

    async def _stream(self) -> JsonDict | None:
        if self.kinesis is None or not self.settings.stream_name:
            return None
        response = await self.kinesis.describe_stream_summary(StreamName=self.settings.stream_name)
        summary = response["StreamDescriptionSummary"]
        return {
            "name": self.settings.stream_name,
            "status": summary.get("StreamStatus"),
            "open_shards": summary.get("OpenShardCount"),
        }

    async def _stream_lag(self) -> JsonDict | None:
        if self.settings.writer_metrics_url_list:
            return await self._writers(self.settings.writer_metrics_url_list)
        if self.cloudwatch is not None and self.settings.stream_name:
            return await self._iterator_age()
        return None

    async def _iterator_age(self) -> JsonDict:
        assert self.cloudwatch is not None
        end = dt.datetime.now(dt.UTC)
        response = await self.cloudwatch.get_metric_statistics(
            Namespace="AWS/Kinesis",
            MetricName=ITERATOR_AGE_METRIC,
            Dimensions=[{"Name": "StreamName", "Value": self.settings.stream_name}],
            StartTime=end - _ITERATOR_AGE_WINDOW,
            EndTime=end,
            Period=60,
            Statistics=["Maximum"],
        )
        points = sorted(response.get("Datapoints", []), key=lambda p: p["Timestamp"])
        return {
            "source": "cloudwatch",
            "max_millis_behind_latest": float(points[-1]["Maximum"]) if points else None,
            "shards": [],
        }

    async def _writers(self, urls: list[str]) -> JsonDict:
        scrapes = await asyncio.gather(*(self._scrape(url) for url in urls))
        shards: dict[str, float] = {}
        reachable = 0
        for lags in scrapes:
            if lags is None:
                continue
            reachable += 1
            for shard_id, millis in lags.items():
                # A shard reported by two workers (a lease changing hands): keep the worse.
                shards[shard_id] = max(millis, shards.get(shard_id, 0.0))
        if reachable == 0:
            raise ConnectionError("no stream-writer answered")
        return {
            "source": "writers",
            "workers": len(urls),
            "workers_reachable": reachable,
            "max_millis_behind_latest": max(shards.values()) if shards else None,
            "shards": [
                {"shard_id": s, "millis_behind_latest": v} for s, v in sorted(shards.items())
            ],
        }

    async def _scrape(self, base_url: str) -> dict[str, float] | None:
        try:
            response = await self.http.get(f"{base_url}/metrics")
            response.raise_for_status()
        except httpx.HTTPError as exc:
            logger.warning(
                "stream-writer metrics unavailable",
                extra={"url": base_url, "error": type(exc).__name__},
            )
            return None
        lags: dict[str, float] = {}
        for family in text_string_to_metric_families(response.text):
            if family.name != WRITER_LAG_METRIC:
                continue
            for sample in family.samples:
                shard_id = sample.labels.get("shard_id")
                if shard_id and math.isfinite(sample.value):
                    lags[shard_id] = float(sample.value)
        return lags

    async def _quarantine_objects(self) -> JsonDict | None:
        if self.s3 is None or not self.settings.bucket:
            return None
        response = await self.s3.list_objects_v2(
            Bucket=self.settings.bucket,
            Prefix=names.QUARANTINE_PREFIX,
            MaxKeys=_QUARANTINE_LIST_MAX,
        )
        return {
            "count": int(response.get("KeyCount", 0)),
            "more": bool(response.get("IsTruncated", False)),
        }
