"""One db-loader process: pool, S3 and SQS clients, poller, health and metrics endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg
from aiohttp import web

from cardstream_shared.aws import aio_client
from cardstream_shared.database import create_pool, database_url
from cardstream_shared.metrics import exposition
from db_loader import ledger
from db_loader.db import APPLICATION_NAME
from db_loader.ledger import SourceObject
from db_loader.loader import KnownDimensions, LoadResult, PartitionCache, load_batch
from db_loader.metrics import LoaderMetrics
from db_loader.object_reader import Limits, UnreadableObjectError, fetch_object
from db_loader.prepare_workers import prepare_pool
from db_loader.rows import prepare_object
from db_loader.settings import LoaderSettings
from db_loader.sqs_poller import DependencyUnavailableError, SqsPoller

if TYPE_CHECKING:
    from db_loader.db import DbConnection

logger = logging.getLogger(__name__)

# The server is away (restarting, failing over, unreachable): no object is at fault.
_DATABASE_AWAY = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


class LoadMonitor(Protocol):
    """Something that watches loads: ``after_insert`` runs inside the load's transaction
    (on the rows it inserted), ``after_commit`` once the commit happened."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def after_insert(self, conn: DbConnection, result: LoadResult) -> None: ...

    def after_commit(self, result: LoadResult) -> Any: ...


class LoaderService:
    """Everything one loader process runs; ``run`` returns after ``stop`` is set."""

    def __init__(
        self,
        settings: LoaderSettings,
        *,
        metrics: LoaderMetrics | None = None,
        monitors: Sequence[LoadMonitor] = (),
    ) -> None:
        self.settings = settings
        self.metrics = metrics or LoaderMetrics()
        self.monitors = list(monitors)
        self.partitions = PartitionCache()
        self.dimensions = KnownDimensions()
        self.limits = Limits(
            settings.max_object_bytes, settings.max_decompressed_bytes, settings.max_line_bytes
        )
        self.pool: asyncpg.Pool | None = None
        self.poller: SqsPoller | None = None
        self.health_port: int | None = None
        self._s3: Any = None
        self._executor: Executor | None = None

    async def handle(self, source: SourceObject) -> None:
        """Load one notified object (raises when it must be retried)."""
        assert self.pool is not None
        started = time.perf_counter()
        try:
            # Cheap check first: a redelivered notification need not download anything.
            async with _database_work():
                loaded = bool(source.etag) and await ledger.is_loaded(self.pool, source)
            if loaded:
                self.metrics.objects.labels("already_loaded").inc()
                return
            identity, body = await fetch_object(self._s3, source, self.limits)
            # Decoding and validation are CPU work: in a worker process (or a thread), so
            # heartbeats and health checks keep running and PostgreSQL works meanwhile.
            batch = await asyncio.get_running_loop().run_in_executor(
                self._executor, prepare_object, identity.key, body, self.limits
            )
            async with _database_work():
                result = await load_batch(
                    self.pool,
                    identity,
                    batch,
                    partitions=self.partitions,
                    dimensions=self.dimensions,
                    hooks=[m.after_insert for m in self.monitors],
                )
        except DependencyUnavailableError:
            self.metrics.objects.labels("database_unavailable").inc()
            raise
        except UnreadableObjectError as exc:
            self.metrics.objects.labels("unreadable").inc()
            self.metrics.unreadable.labels(exc.reason).inc()
            raise
        except Exception:
            self.metrics.objects.labels("failed").inc()
            raise
        for monitor in self.monitors:
            monitor.after_commit(result)
        self.metrics.record(result)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        logger.info(
            "object loaded" if not result.already_loaded else "object already loaded",
            extra={
                "object": identity.uri,
                "rows": result.row_count,
                "inserted": result.inserted_count,
                "duplicates": result.duplicate_count,
                "quarantined": result.quarantined_count,
            },
        )

    async def database_answers(self) -> bool:
        """Whether PostgreSQL answers a query now."""
        if self.pool is None:
            return False
        try:
            await asyncio.wait_for(self.pool.fetchval("SELECT 1"), timeout=2)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        return True

    async def _healthz(self, request: web.Request) -> web.Response:
        problems = []
        if self.poller is None or not self.poller.receiving:
            problems.append("not polling")
        if self.pool is None:
            problems.append("no database pool")
        elif not await self.database_answers():
            problems.append("database unreachable")
        if problems:
            return web.json_response({"status": "unhealthy", "problems": problems}, status=503)
        return web.json_response({"status": "ok"})

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = exposition(self.metrics.registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, serve health and metrics, poll until ``stop``, then shut down cleanly."""
        if self.settings.prepare_processes:
            self._executor = prepare_pool(self.settings.prepare_processes)
        self.pool = await create_pool(
            await database_url(self.settings),
            application_name=APPLICATION_NAME,
            min_size=self.settings.pool_min_size,
            max_size=self.settings.pool_max_size,
            statement_timeout_s=self.settings.statement_timeout_s,
        )
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.health_host, self.settings.health_port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.health_port = sockets[0].getsockname()[1] if sockets else self.settings.health_port
        try:
            for monitor in self.monitors:
                await monitor.start()
            async with (
                aio_client("s3", self.settings) as s3,
                aio_client(
                    "sqs",
                    self.settings,
                    # A long poll holds the connection for up to 20 s.
                    read_timeout=self.settings.wait_time_s + self.settings.aws_read_timeout_s,
                ) as sqs,
            ):
                self._s3 = s3
                self.poller = SqsPoller(
                    self.settings, sqs, self.handle, self.metrics, available=self.database_answers
                )
                logger.info("db-loader polling", extra={"queue_url": self.settings.queue_url})
                await self.poller.run(stop)
        finally:
            for monitor in self.monitors:
                with contextlib.suppress(Exception):
                    await monitor.stop()
            await runner.cleanup()
            await self.pool.close()
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
            logger.info("db-loader stopped")


@contextlib.asynccontextmanager
async def _database_work() -> AsyncIterator[None]:
    """Database calls whose failure, when the server is away, is no object's fault."""
    try:
        yield
    except _DATABASE_AWAY as exc:
        raise DependencyUnavailableError(f"database unavailable: {exc!r}") from exc
