"""The FastAPI application factory."""

from __future__ import annotations

import contextlib
import gc
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
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
            # FastAPI routes leave themselves in scope["route"]; the write lane leaves only
            # the endpoint, and its routes have no path parameters: the path is the template.
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
    """A route's endpoint as an ASGI app, answering its :class:`ProblemError` as the
    installed exception handler does (problems.install)."""

    def __init__(self, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # What the router leaves in the scope of a matched route without path parameters.
        scope["endpoint"] = self.endpoint
        scope["path_params"] = {}
        try:
            response = await self.endpoint(Request(scope, receive, send))
        except ProblemError as exc:
            response = problems.problem_error_response(exc)
        await response(scope, receive, send)


class IngestApp(FastAPI):
    """FastAPI, with POSTs to the write routes served on a lane of their own (the write lane).

    FastAPI's routing costs more than the whole of the rest of a single-record POST can
    spare (figures in docs/benchmarks.md): its middleware stack (telemetry, body limit,
    exceptions, exit stack, Starlette's error middleware), the router's linear match and
    its request handling. A POST to a write route's exact path runs only the middleware the
    service adds itself (request metrics, then the unexpected-error guard) around the
    route's endpoint, with :class:`ProblemError` answered as the stack would; any other
    method or path, and any request under a root path, takes the full stack, where the
    routes are registered too (OpenAPI, 405).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._write_lane: dict[str, ASGIApp] = {}

    def add_write_lane(self, router: APIRouter, metrics: IngestMetrics) -> None:
        """Include ``router`` and serve POSTs to its routes' exact paths on the write lane.

        The lane calls each endpoint with the raw ``Request`` alone, so a route that takes
        anything else (a dependency such as a security check, a parameter) is refused
        rather than served without it.
        """
        self.include_router(router)
        for route in router.routes:
            if not (
                isinstance(route, APIRoute)
                and route.methods == {"POST"}
                and route.dependant.request_param_name
                and len(inspect.signature(route.endpoint).parameters) == 1
                and not route.dependencies
            ):
                raise ValueError(
                    f"{getattr(route, 'path', route)!r}: the write lane serves only POST "
                    "routes whose endpoint takes the Request alone"
                )
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
    app.add_write_lane(transactions.write_router, metrics)
    app.include_router(transactions.router)
    app.include_router(health.router)
    app.include_router(alerts_routes.router)
    openapi_docs.install(app)
    problems.install(app)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    return app
