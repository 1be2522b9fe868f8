"""``cardstream status``: how many records reached each stage of the local pipeline.

Every figure comes from the stage itself, found through ``stack.json``: the ingest-api
instances' Prometheus counters, the landing bucket's listing, the database's tables, the
queues' attributes and the stream-writers' lag gauges. A stage that cannot be reached is
shown as "unavailable" with the reason; the others are still reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client.parser import text_string_to_metric_families

from cardstream.stack_info import StackInfoError, load_stack_info, use_local_aws_credentials
from cardstream_shared import resource_names as names
from cardstream_shared.aws import boto3_client
from cardstream_shared.settings import ServiceSettings

ACCEPTED_METRIC: Final = "cardstream_ingest_records_total"
LAG_METRIC: Final = "cardstream_writer_millis_behind_latest"
HTTP_TIMEOUT_S: Final = 2.0
DB_CONNECT_TIMEOUT_S: Final = 3


@dataclass
class Stage:
    """One line of the report: a count, or why it is unavailable."""

    key: str
    label: str
    value: int | float | None = None
    detail: str = ""
    error: str | None = None


class StageUnavailable(Exception):  # noqa: N818 - "unavailable" is what the report prints
    """The stage could not be measured; the message says why (no secrets, no values)."""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def scrape(url: str, metric: str, labels: dict[str, str] | None = None) -> list[float]:
    """Values of the samples named ``metric`` (matching ``labels``) at ``url``/metrics."""
    response = httpx.get(f"{url.rstrip('/')}/metrics", timeout=HTTP_TIMEOUT_S)
    response.raise_for_status()
    values = []
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name != metric:
                continue
            if labels and any(sample.labels.get(k) != v for k, v in labels.items()):
                continue
            values.append(float(sample.value))
    return values


def _over_instances(
    urls: list[str], metric: str, labels: dict[str, str] | None, combine: Callable[..., float]
) -> tuple[float, str]:
    results: list[float] = []
    failures: list[str] = []
    for url in urls:
        try:
            results.extend(scrape(url, metric, labels))
        except (httpx.HTTPError, ValueError) as exc:
            failures.append(f"{url}: {_describe(exc)}")
    if failures and len(failures) == len(urls):
        raise StageUnavailable("; ".join(failures))
    detail = f"{len(urls) - len(failures)} of {len(urls)} instances"
    if failures:
        detail += " (unreachable: " + "; ".join(failures) + ")"
    return (combine(results) if results else 0.0), detail


def _service_urls(info: dict[str, Any], service: str) -> list[str]:
    urls = (info.get("service_urls") or {}).get(service) or []
    if not urls:
        raise StageUnavailable(f"stack.json lists no {service} instance")
    return [str(u) for u in urls]


class Probe:
    """Measures each stage of the stack described by a parsed stack.json."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        # Created up front on one thread: boto3's default session is not thread-safe.
        if service not in self._clients:
            endpoint = self.info.get("aws_endpoint_url")
            if not endpoint:
                raise StageUnavailable("stack.json has no aws_endpoint_url")
            settings = ServiceSettings(
                environment="local",
                aws_region=str(self.info.get("aws_region") or "us-east-1"),
                aws_endpoint_url=str(endpoint),
                aws_max_attempts=2,
                aws_connect_timeout_s=2.0,
                aws_read_timeout_s=5.0,
            )
            use_local_aws_credentials()
            self._clients[service] = boto3_client(service, settings)
        return self._clients[service]

    def accepted(self) -> tuple[float, str]:
        urls = _service_urls(self.info, "ingest-api")
        return _over_instances(urls, ACCEPTED_METRIC, {"outcome": "accepted"}, sum)

    def stream_lag(self) -> tuple[float, str]:
        urls = _service_urls(self.info, "stream-writer")
        return _over_instances(urls, LAG_METRIC, None, max)

    def _count_objects(self, prefix: str) -> tuple[int, str]:
        bucket = str(self.info.get("bucket") or names.LANDING_BUCKET)
        paginator = self.client("s3").get_paginator("list_objects_v2")
        total = sum(
            page.get("KeyCount", 0) for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
        )
        return total, f"s3://{bucket}/{prefix}"

    def objects_landed(self) -> tuple[int, str]:
        return self._count_objects(names.RAW_PREFIX)

    def quarantined_objects(self) -> tuple[int, str]:
        return self._count_objects(names.QUARANTINE_PREFIX)

    def _queue_depth(self, key: str) -> tuple[int, str]:
        url = self.info.get(key)
        if not url:
            raise StageUnavailable(f"stack.json has no {key}")
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        in_flight = int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0))
        return int(attributes["ApproximateNumberOfMessages"]), f"{in_flight} in flight"

    def queue_backlog(self) -> tuple[int, str]:
        return self._queue_depth("queue_url")

    def dlq_depth(self) -> tuple[int, str]:
        return self._queue_depth("dlq_url")

    def _count_rows(self, table: str) -> tuple[int, str]:
        dsn = self.info.get("admin_database_url")
        if not dsn:
            raise StageUnavailable("stack.json has no admin_database_url")
        with psycopg.connect(dsn, connect_timeout=DB_CONNECT_TIMEOUT_S, autocommit=True) as conn:
            # ``table`` is one of the fixed names below, never user input.
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
        return (int(row[0]) if row else 0), table

    def rows_loaded(self) -> tuple[int, str]:
        return self._count_rows("cardstream.transaction")

    def objects_loaded(self) -> tuple[int, str]:
        return self._count_rows("cardstream.object_ledger")

    def quarantined_rows(self) -> tuple[int, str]:
        return self._count_rows("cardstream.quarantined_row")


STAGES: Final = (
    ("accepted", "accepted by ingest-api", "accepted"),
    ("objects_landed", "objects landed (S3 raw/)", "objects_landed"),
    ("queue_backlog", "loader queue backlog (SQS)", "queue_backlog"),
    ("objects_loaded", "objects loaded (ledger)", "objects_loaded"),
    ("rows_loaded", "rows loaded", "rows_loaded"),
    ("quarantined_rows", "quarantined rows", "quarantined_rows"),
    ("quarantined_objects", "quarantined objects (S3)", "quarantined_objects"),
    ("dlq_depth", "DLQ depth", "dlq_depth"),
    ("stream_lag_ms", "stream lag (ms, max)", "stream_lag"),
)


def collect(info: dict[str, Any]) -> list[Stage]:
    """Measure every stage; failures become ``Stage.error``, never exceptions."""
    probe = Probe(info)
    for service in ("s3", "sqs"):
        try:
            probe.client(service)
        except (StageUnavailable, BotoCoreError, ValueError):
            # The stage that needs the client reports the reason.
            continue

    def measure(spec: tuple[str, str, str]) -> Stage:
        key, label, method = spec
        stage = Stage(key, label)
        try:
            value, stage.detail = getattr(probe, method)()
        except (
            StageUnavailable,
            httpx.HTTPError,
            psycopg.Error,
            BotoCoreError,
            ClientError,
            ValueError,
            OSError,
        ) as exc:
            stage.error = str(exc) if isinstance(exc, StageUnavailable) else _describe(exc)
        else:
            stage.value = int(value) if float(value).is_integer() else value
        return stage

    with ThreadPoolExecutor(max_workers=len(STAGES)) as pool:
        return list(pool.map(measure, STAGES))


def render(stages: list[Stage]) -> str:
    """A small aligned table."""
    width = max(len(s.label) for s in stages)
    lines = [f"{'stage':<{width}}  {'count':>12}  detail"]
    for stage in stages:
        if stage.error is not None:
            value, detail = "unavailable", stage.error
        else:
            value = f"{stage.value:,}" if stage.value is not None else "-"
            detail = stage.detail
        lines.append(f"{stage.label:<{width}}  {value:>12}  {detail}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cardstream status``."""
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".cardstream"),
        help="where stack.json is (default .cardstream)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    """Print the report; 0 even when some stages are unavailable (they say why)."""
    try:
        info = load_stack_info(args.state_dir)
    except StackInfoError as exc:
        print(f"cardstream status: {exc}", file=sys.stderr)
        return 2
    stages = collect(info)
    if args.json:
        print(
            json.dumps(
                {s.key: {k: v for k, v in asdict(s).items() if k != "key"} for s in stages},
                indent=2,
            )
        )
    else:
        print(render(stages))
    return 0
