"""``/healthz`` and ``/metrics`` on a small aiohttp server (127.0.0.1 by default)."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from cardstream_shared.metrics import exposition
from stream_writer.metrics import WriterMetrics


class HealthServer:
    """Serves liveness (a recent lease-table scan) and Prometheus metrics."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        worker_id: str,
        metrics: WriterMetrics,
        last_scan_at: Callable[[], float | None],
        held_shards: Callable[[], list[str]],
        max_scan_age_s: float,
    ) -> None:
        self._host = host
        self._port = port
        self._worker_id = worker_id
        self._metrics = metrics
        self._last_scan_at = last_scan_at
        self._held_shards = held_shards
        self._max_scan_age_s = max_scan_age_s
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def _healthz(self, request: web.Request) -> web.Response:
        last = self._last_scan_at()
        healthy = last is not None and time.monotonic() - last <= self._max_scan_age_s
        body = {
            "status": "ok" if healthy else "unavailable",
            "worker_id": self._worker_id,
            "leases": self._held_shards(),
        }
        return web.json_response(body, status=200 if healthy else 503)

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        body, content_type = exposition(self._metrics.registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def start(self) -> None:
        """Bind and serve; ``port`` holds the bound port afterwards (useful with port 0)."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self._port

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
