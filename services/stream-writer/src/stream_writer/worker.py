"""The stream-writer worker: AWS clients, lease coordination, health server, signals."""

from __future__ import annotations

import asyncio
import logging
import signal

from cardstream_shared.aws import aio_client
from stream_writer.health import HealthServer
from stream_writer.lease import LeaseTable
from stream_writer.lease_coordinator import LeaseCoordinator
from stream_writer.metrics import WriterMetrics
from stream_writer.s3_sink import S3Sink
from stream_writer.settings import WriterSettings
from stream_writer.shard_reader import kinesis_client

log = logging.getLogger(__name__)


async def run_worker(settings: WriterSettings, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT): then flush, checkpoint, release."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    metrics = WriterMetrics()
    async with (
        kinesis_client(settings) as kinesis,
        aio_client("dynamodb", settings) as dynamodb,
        aio_client("s3", settings) as s3,
    ):
        table = LeaseTable(dynamodb, settings.lease_table, settings.worker_id)
        coordinator = LeaseCoordinator(
            settings=settings,
            table=table,
            kinesis=kinesis,
            sink=S3Sink(s3, settings.bucket),
            metrics=metrics,
        )
        health = HealthServer(
            host=settings.health_host,
            port=settings.health_port,
            worker_id=settings.worker_id,
            metrics=metrics,
            last_scan_at=lambda: coordinator.last_scan_at,
            held_shards=lambda: coordinator.held_shards,
            max_scan_age_s=3 * settings.take_interval_s + settings.aws_read_timeout_s,
        )
        await health.start()
        log.info(
            "stream-writer started",
            extra={
                "worker_id": settings.worker_id,
                "stream": settings.stream_name,
                "health_port": health.port,
            },
        )
        try:
            await coordinator.run(stop)
        finally:
            await health.stop()
    log.info("stream-writer stopped", extra={"worker_id": settings.worker_id})
