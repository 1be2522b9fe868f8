"""The FastAPI application factory."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest_api import alerts_routes, openapi_docs, problems
from ingest_api.metrics import IngestMetrics
from ingest_api.problems import ProblemError
from ingest_api.routes import health, transactions
from ingest_api.runtime import open_runtime
from ingest_api.settings import IngestSettings

DESCRIPTION = """
Merchant-facing ingestion of credit-card transactions (Kaggle "Credit Card Transactions
Fraud Detection" schema). Card numbers are tokenized at this edge and never stored or
echoed. A record is acknowledged only once Kinesis stored it.

Authenticate with a bearer JWT (button **Authorize**): scope `transactions:write` to post,
`transactions:read` to read, `alerts:review` to review alerts (a person's token). A caller
reads the transactions and alerts of its own client only (another client's answer 404,
like missing ones); the operator scope `tenants:all` reads every client's. Errors are
RFC 9457 `application/problem+json`.
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


class _EndpointApp:
    """A Starlette endpoint as an ASGI app, answering its :class:`ProblemError` as the
    installed exception handler does (problems.install)."""

    def __init__(self, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # What the router leaves in the scope of a matched plain route.
        scope["endpoint"] = self.endpoint
        scope["path_params"] = {}
        try:
            response = await self.endpoint(Request(scope, receive, send))
        except ProblemError as exc:
            response = problems.problem_error_response(exc)
        await response(scope, receive, send)


class IngestApp(FastAPI):
    """FastAPI, with the write routes served through a short lane of their own.

    A single-record POST went through nine ASGI layers before its handler (FastAPI's
    telemetry, body-limit, exit-stack and exception middleware, Starlette's error
    middleware, the router's linear match); the ingest benchmark measured FastAPI's own
    routing at far more than the handler's cost (docs/ingest-api.md, design notes). A POST
    to a write route's exact path now runs the same
    middleware the service adds itself (request metrics, then the unexpected-error guard)
    around the handler, with ProblemError answered as the stack would; any other method or
    path takes the full stack, where the routes are also registered (405s, OpenAPI).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._write_lane: dict[str, ASGIApp] = {}

    def add_write_routes(self, routes: Iterable[Route], metrics: IngestMetrics) -> None:
        """Register ``routes`` (plain POST routes without path parameters) on both paths."""
        for route in routes:
            self.router.routes.append(route)
            self._write_lane[route.path] = RequestMetricsMiddleware(
                problems.UnexpectedErrorMiddleware(_EndpointApp(route.endpoint)),
                metrics=metrics,
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            lane = self._write_lane.get(scope["path"])
            if lane is not None:
                scope["app"] = self
                await lane(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: IngestSettings,
    *,
    metrics: IngestMetrics | None = None,
    kinesis_client: Any | None = None,
    ssm_client: Any | None = None,
    freeze_heap: bool = False,
) -> IngestApp:
    """The ingest-api application; its lifespan opens clients and loads the PAN keyring
    and the merchant registry.

    ``kinesis_client`` and ``ssm_client`` replace the aiobotocore clients (tests inject
    faults with them).
    ``freeze_heap`` (the service process, not tests sharing an interpreter) moves every
    object alive once start-up finished out of the garbage collector's reach.
    """
    metrics = metrics or IngestMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(
            settings, metrics=metrics, kinesis_client=kinesis_client, ssm_client=ssm_client
        ) as runtime:
            app.state.runtime = runtime
            if freeze_heap:
                # About 180,000 objects (modules, FastAPI and pydantic schemas, botocore
                # service models) live for the whole process; every full collection
                # traversed them all (figures in docs/benchmarks.md). Frozen, collections
                # see only request garbage (gc.freeze, Python 3.7+).
                gc.freeze()
            yield

    app = IngestApp(
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
    app.add_write_routes(transactions.WRITE_ROUTES, metrics)
    app.include_router(transactions.router)
    app.include_router(health.router)
    app.include_router(alerts_routes.router)
    openapi_docs.install(app)
    problems.install(app)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    return app
