"""The FastAPI application factory."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest_api import alerts_routes, openapi_docs, problems
from ingest_api.metrics import IngestMetrics
from ingest_api.routes import health, transactions
from ingest_api.runtime import open_runtime
from ingest_api.settings import IngestSettings

DESCRIPTION = """
Merchant-facing ingestion of credit-card transactions (Kaggle "Credit Card Transactions
Fraud Detection" schema). Card numbers are tokenized at this edge and never stored or
echoed. A record is acknowledged only once Kinesis stored it.

Authenticate with a bearer JWT (button **Authorize**): scope `transactions:write` to post,
`transactions:read` to read. Errors are RFC 9457 `application/problem+json`.
"""


class RequestMetricsMiddleware:
    """Counts requests and observes their latency, labelled by route template.

    A pure ASGI middleware: Starlette's ``BaseHTTPMiddleware`` costs a task and a memory
    stream per request, which shows at thousands of requests per second.
    """

    def __init__(self, app: ASGIApp, metrics: IngestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.requests_in_progress.inc()
        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.metrics.requests_in_progress.dec()
            # FastAPI routes leave themselves in scope["route"]; the plain write routes leave
            # only their endpoint, and have no path parameters, so the path is the template.
            # Unmatched paths share one label so that scanners cannot grow the series count.
            template = getattr(scope.get("route"), "path", None) or (
                scope["path"] if scope.get("endpoint") is not None else "unmatched"
            )
            method = scope.get("method", "")
            self.metrics.requests.labels(route=template, method=method, status=str(status)).inc()
            self.metrics.request_latency.labels(route=template, method=method).observe(
                time.perf_counter() - started
            )


def create_app(
    settings: IngestSettings,
    *,
    metrics: IngestMetrics | None = None,
    kinesis_client: Any | None = None,
) -> FastAPI:
    """The ingest-api application; its lifespan opens clients and loads the PAN keyring.

    ``kinesis_client`` replaces the aiobotocore client (tests inject faults with it).
    """
    metrics = metrics or IngestMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(
            settings, metrics=metrics, kinesis_client=kinesis_client
        ) as runtime:
            app.state.runtime = runtime
            yield

    app = FastAPI(
        title="cardstream ingest-api",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        # Metrics are Prometheus (below); FastAPI's OpenTelemetry hooks would only add a
        # provider look-up to every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.router.routes.extend(transactions.WRITE_ROUTES)
    app.include_router(transactions.router)
    app.include_router(health.router)
    app.include_router(alerts_routes.router)
    openapi_docs.install(app)
    problems.install(app)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    return app
