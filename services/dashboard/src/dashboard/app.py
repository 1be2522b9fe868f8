"""The dashboard service: one read-only page, its JSON feed, /healthz and /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import html
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import asyncpg
import httpx
import msgspec
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Match

from cardstream_shared.aws import aio_client
from cardstream_shared.bearer_auth import BearerAuthenticator, RefusalError, token_in_url
from cardstream_shared.database import create_pool, database_url
from cardstream_shared.metrics import exposition
from dashboard.auth import COOKIE_NAME, REQUIRED_SCOPES, reader
from dashboard.metrics import DashboardMetrics
from dashboard.pipeline import PipelineProbe
from dashboard.queries import JsonDict, Limits, read_panels
from dashboard.settings import DashboardSettings
from dashboard.signin import (
    CALLBACK_PATH,
    PENDING_COOKIE,
    PENDING_MAX_AGE_S,
    SIGNIN_PATH,
    SIGNOUT_PATH,
    Pending,
    SignInError,
    returned_code,
)

logger = logging.getLogger("dashboard")
access_logger = logging.getLogger("dashboard.access")
audit_logger = logging.getLogger("dashboard.audit")

_PACKAGE_DIR: Final = Path(str(resources.files("dashboard")))
_STATIC_DIR: Final = _PACKAGE_DIR / "static"
_PAGE: Final = (_PACKAGE_DIR / "page.html").read_text(encoding="utf-8")
# InternalClientError: what asyncpg raises on a pooled connection whose backend was
# terminated (pg_terminate_backend, a restarted server) before it noticed.
_DB_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)

# The page runs only our own files: no inline script, nothing from another origin.
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # The callback URL carries a one-time code: never hand it to another site as a referrer.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

_REFUSAL_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cardstream dashboard: {title}</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/dashboard.css"></head>
<body class="refused"><main><h1>{title}</h1><p>{detail}</p>{after}</main></body></html>
"""

# A POST from the dashboard's own page (SIGNOUT_PATH checks the origin).
_SIGNOUT_FORM: Final = (
    f'<form class="signout" method="post" action="{SIGNOUT_PATH}">'
    '<button type="submit">Sign out</button></form>'
)

# After signing out: with a provider logout endpoint the browser goes on to it (a meta
# refresh: the page's form-action allows only the dashboard's own address, also for
# redirects), else it is offered a new sign-in.
_SIGNED_OUT_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cardstream dashboard: signed out</title>
{refresh}<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/dashboard.css">
</head><body class="refused"><main><h1>Signed out</h1>
<p><a href="{signin}">Sign in again</a></p></main></body></html>
"""

# After the callback: the browser goes on to the page from the dashboard's own document, so
# the SameSite=Strict session cookie is sent (it is not on a redirect that another site's
# page started). A meta refresh runs under the page's Content-Security-Policy.
_SIGNED_IN_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cardstream dashboard: signed in</title>
<meta http-equiv="refresh" content="0;url=/">
<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/dashboard.css"></head>
<body class="refused"><main><h1>Signed in</h1><p><a href="/">Open the dashboard</a></p></main>
</body></html>
"""


@dataclass
class SnapshotCache:
    """One database snapshot shared by every viewer for a short time (single flight).

    The views aggregate the whole transaction table, so the cache also keeps the database
    from spending more than ``1 / (1 + hold_factor)`` of its time on the dashboard: the next
    snapshot waits at least ``hold_factor`` times as long as the last one took.
    """

    read: Callable[[], Awaitable[JsonDict]]
    ttl_s: float
    hold_factor: float
    metrics: DashboardMetrics
    _value: JsonDict | None = None
    _as_of: str | None = None
    _failed: bool = False
    _taken_at: float = float("-inf")
    _hold_s: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def get(self) -> tuple[JsonDict | None, str | None, bool]:
        """The panels, when they were read, and whether the latest read failed (stale)."""
        async with self._lock:
            if time.monotonic() - self._taken_at < self._hold_s:
                return self._value, self._as_of, self._failed
            started = time.monotonic()
            try:
                value = await self.read()
            except _DB_ERRORS as exc:
                self.metrics.source_errors.labels(source="database").inc()
                logger.warning("database unavailable", extra={"error": type(exc).__name__})
                # A failure is shared for the TTL too, so a database that is down is not
                # retried once per viewer and refresh.
                self._failed = True
                self._taken_at = time.monotonic()
                self._hold_s = self.ttl_s
                return self._value, self._as_of, True
            elapsed = time.monotonic() - started
            self.metrics.snapshot_seconds.observe(elapsed)
            self._value = value
            self._as_of = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
            self._failed = False
            self._taken_at = time.monotonic()
            self._hold_s = max(self.ttl_s, self.hold_factor * elapsed)
            return self._value, self._as_of, False


@dataclass
class Runtime:
    """What the routes use, built in the lifespan."""

    settings: DashboardSettings
    metrics: DashboardMetrics
    authenticator: BearerAuthenticator
    http: httpx.AsyncClient
    pool: asyncpg.Pool
    probe: PipelineProbe
    cache: SnapshotCache


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        msgspec.json.encode(body),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _problem(refusal: RefusalError) -> Response:
    body = {
        "type": "about:blank",
        "title": refusal.title,
        "status": refusal.status,
        "detail": refusal.detail,
    }
    return Response(
        msgspec.json.encode(body),
        status_code=refusal.status,
        media_type="application/problem+json",
        headers={"WWW-Authenticate": refusal.challenge, "Cache-Control": "no-store"},
    )


def _refusal_page(refusal: RefusalError) -> HTMLResponse:
    if refusal.status == 401:
        title = "Sign-in needed"
        detail = "Sign-in is not configured for this dashboard (DASHBOARD_SIGNIN_*)."
    else:
        title = "Access denied"
        detail = (
            f"Your sign-in does not carry the {html.escape(str(refusal.scope))} scope: the "
            "dashboard shows every merchant's transactions and alerts, to operators only."
        )
        # A session that cannot open the page can at least be ended.
        return _page_response(title, detail, refusal.status, after=_SIGNOUT_FORM)
    return _page_response(title, detail, refusal.status)


def _page_response(title: str, detail: str, status: int, *, after: str = "") -> HTMLResponse:
    return HTMLResponse(
        _REFUSAL_PAGE.format(title=title, detail=detail, after=after),
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


async def _database_ok(pool: asyncpg.Pool, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            return bool(await pool.fetchval("SELECT 1") == 1)
    except _DB_ERRORS:
        return False


def _route_template(app: FastAPI, request: Request) -> str:
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match is Match.FULL:
            return str(getattr(route, "path", request.url.path))
    return "unmatched"


def create_app(settings: DashboardSettings, *, metrics: DashboardMetrics | None = None) -> FastAPI:
    """The dashboard application; connections open in its lifespan."""
    metrics = metrics or DashboardMetrics()
    limits = Limits(
        map_max_locations=settings.map_max_locations,
        hourly_trend_hours=settings.hourly_trend_hours,
        daily_trend_days=settings.daily_trend_days,
        freshness_window_minutes=settings.freshness_window_minutes,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            pool = await create_pool(
                await database_url(settings),
                application_name="cardstream-dashboard",
                min_size=settings.pool_min_size,
                max_size=settings.pool_max_size,
                statement_timeout_s=settings.db_statement_timeout_s,
                connect_timeout_s=settings.db_connect_timeout_s,
                command_timeout_s=settings.db_statement_timeout_s + 5,
                read_only=True,
            )
            stack.push_async_callback(pool.close)
            sqs = kinesis = s3 = cloudwatch = None
            if settings.queue_url or settings.dlq_url:
                sqs = await stack.enter_async_context(aio_client("sqs", settings))
            if settings.stream_name:
                kinesis = await stack.enter_async_context(aio_client("kinesis", settings))
            if settings.bucket:
                s3 = await stack.enter_async_context(aio_client("s3", settings))
            if settings.stream_name and settings.cloudwatch_stream_lag:
                cloudwatch = await stack.enter_async_context(aio_client("cloudwatch", settings))
            http = await stack.enter_async_context(
                httpx.AsyncClient(timeout=settings.probe_timeout_s, follow_redirects=False)
            )
            authenticator = settings.bearer_authenticator(
                audit_logger,
                on_refusal=lambda refusal: metrics.auth_refusals.labels(
                    status=str(refusal.status)
                ).inc(),
            )

            async def read() -> JsonDict:
                async with pool.acquire() as conn:
                    return await read_panels(conn, limits)

            app.state.runtime = Runtime(
                settings=settings,
                metrics=metrics,
                authenticator=authenticator,
                http=http,
                pool=pool,
                probe=PipelineProbe(
                    settings,
                    metrics,
                    sqs=sqs,
                    kinesis=kinesis,
                    s3=s3,
                    cloudwatch=cloudwatch,
                    http=http,
                ),
                cache=SnapshotCache(
                    read, settings.snapshot_ttl_s, settings.snapshot_hold_factor, metrics
                ),
            )
            logger.info(
                "dashboard ready",
                extra={"host": settings.host, "port": settings.port},
            )
            yield
            logger.info("dashboard stopping: closing connections")

    app = FastAPI(
        title="cardstream dashboard",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.mount("/static", StaticFiles(directory=_STATIC_DIR), name="static")

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.monotonic()
        if token_in_url(request.query_params):
            # A token in a URL lands in access logs and browser history: never read one.
            audit_logger.warning(
                "token in URL refused",
                extra={"event": "token_in_url", "method": request.method, "path": request.url.path},
            )
            response: Response = _page_response(
                "Token in the address refused",
                "The dashboard never takes a token from its address. "
                f'<a href="{SIGNIN_PATH}">Sign in</a> instead.',
                400,
            )
        else:
            response = await call_next(request)
        response.headers.update(_SECURITY_HEADERS)
        route = _route_template(app, request)
        metrics.requests.labels(
            route=route, method=request.method, status=str(response.status_code)
        ).inc()
        if route not in ("/healthz", "/metrics"):
            # The path only: a query string may carry a one-time code or a refused token.
            access_logger.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                },
            )
        return response

    def runtime(request: Request) -> Runtime:
        value: Runtime = request.app.state.runtime
        return value

    @app.get("/healthz", include_in_schema=False)
    async def healthz(request: Request) -> Response:
        ok = await _database_ok(runtime(request).pool, settings.probe_timeout_s)
        body = {"status": "ok" if ok else "degraded", "database": "ok" if ok else "unavailable"}
        return _json(body, 200 if ok else 503, {"Cache-Control": "no-store"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        body, content_type = exposition(metrics.registry)
        return Response(body, media_type=content_type)

    @app.get("/", include_in_schema=False)
    async def page(request: Request) -> Response:
        rt = runtime(request)
        try:
            await reader(rt.authenticator, request, allow_header=False)
        except RefusalError as refusal:
            if refusal.status == 401 and settings.signin_client is not None:
                # No session (or an expired one): sign in, quietly, as any web application.
                return RedirectResponse(
                    SIGNIN_PATH, status_code=303, headers={"Cache-Control": "no-store"}
                )
            rt.authenticator.audit(request, refusal)
            return _refusal_page(refusal)
        return HTMLResponse(_PAGE, headers={"Cache-Control": "no-store"})

    def public_base(request: Request) -> str:
        """The dashboard's address as the browser sees it, without a trailing slash."""
        return (settings.public_url or str(request.base_url)).rstrip("/")

    def redirect_uri(request: Request) -> str:
        return f"{public_base(request)}{CALLBACK_PATH}"

    @app.get(SIGNIN_PATH, include_in_schema=False)
    async def sign_in(request: Request) -> Response:
        client = settings.signin_client
        if client is None:
            return _refusal_page(RefusalError(401, "sign-in not configured"))
        pending = Pending.new()
        response = RedirectResponse(
            client.authorization_redirect(pending, redirect_uri(request)),
            status_code=303,
            headers={"Cache-Control": "no-store"},
        )
        # Lax: it has to come back with the provider's redirect, a navigation that another
        # site starts; it holds no credential, only what proves the way back is ours.
        response.set_cookie(
            PENDING_COOKIE,
            pending.cookie_value(),
            max_age=PENDING_MAX_AGE_S,
            path=CALLBACK_PATH,
            httponly=True,
            samesite="lax",
            secure=settings.secure_cookie,
        )
        return response

    @app.get(CALLBACK_PATH, include_in_schema=False)
    async def callback(request: Request) -> Response:
        rt = runtime(request)
        client = settings.signin_client
        if client is None:
            return _refusal_page(RefusalError(401, "sign-in not configured"))
        try:
            pending = Pending.from_cookie(
                request.cookies.get(PENDING_COOKIE), request.query_params.get("state")
            )
            code = returned_code(request.query_params)
            token = await client.exchange(rt.http, code, pending, redirect_uri(request))
            principal = await rt.authenticator.principal(token, *REQUIRED_SCOPES)
        except SignInError as exc:
            logger.warning("sign-in failed", extra={"event": "signin_failed", "reason": str(exc)})
            # The reason may quote the provider's error parameter: escaped, never markup.
            reason = html.escape(str(exc))
            response = _page_response(
                "Sign-in failed", f'{reason}. <a href="{SIGNIN_PATH}">Sign in again</a>.', 400
            )
            response.delete_cookie(PENDING_COOKIE, path=CALLBACK_PATH)
            return response
        except RefusalError as refusal:
            rt.authenticator.audit(request, refusal)
            return _refusal_page(refusal)
        logger.info(
            "signed in",
            extra={"event": "signed_in", "subject": principal.subject, "person": principal.person},
        )
        response = HTMLResponse(_SIGNED_IN_PAGE, headers={"Cache-Control": "no-store"})
        max_age = int((principal.expires_at or time.time()) - time.time())
        # The session: script on the page cannot read it, no other site's request carries it.
        response.set_cookie(
            COOKIE_NAME,
            token,
            max_age=max(max_age, 0),
            path="/",
            httponly=True,
            samesite="strict",
            secure=settings.secure_cookie,
        )
        response.delete_cookie(PENDING_COOKIE, path=CALLBACK_PATH)
        return response

    def same_origin(request: Request) -> bool:
        """Whether a browser sent the request from the dashboard's own pages.

        Browsers say in ``Sec-Fetch-Site`` whether a request comes from another site. They
        send ``Origin: null`` from the dashboard's pages (their referrer policy is
        no-referrer), so ``Origin`` is compared only when it names an origin; a request
        with neither comes from no browser page, so no other site can have made it.
        """
        own = urlsplit(public_base(request))
        origin = request.headers.get("origin", "null")
        if origin != "null" and origin != f"{own.scheme}://{own.netloc}":
            return False
        return request.headers.get("sec-fetch-site", "same-origin") == "same-origin"

    @app.post(SIGNOUT_PATH, include_in_schema=False)
    async def sign_out(request: Request) -> Response:
        rt = runtime(request)
        if not same_origin(request):
            # Another site's form: its request leaves this browser's session alone.
            audit_logger.warning(
                "cross-site sign-out refused",
                extra={"event": "signout_refused", "origin": request.headers.get("origin")},
            )
            return _page_response(
                "Sign-out refused", "Sign out from the dashboard's own page.", 403
            )
        token = request.cookies.get(COOKIE_NAME)
        if token:
            try:
                principal = await rt.authenticator.principal(token)
            except RefusalError:
                pass
            else:
                logger.info(
                    "signed out",
                    extra={
                        "event": "signed_out",
                        "subject": principal.subject,
                        "person": principal.person,
                    },
                )
        client = settings.signin_client
        logout = client.logout_redirect(f"{public_base(request)}/") if client else None
        refresh = (
            f'<meta http-equiv="refresh" content="0;url={html.escape(logout)}">\n' if logout else ""
        )
        response = HTMLResponse(
            _SIGNED_OUT_PAGE.format(refresh=refresh, signin=SIGNIN_PATH),
            headers={"Cache-Control": "no-store"},
        )
        response.delete_cookie(
            COOKIE_NAME, path="/", httponly=True, samesite="strict", secure=settings.secure_cookie
        )
        return response

    @app.get("/api/dashboard", include_in_schema=False)
    async def dashboard_data(request: Request) -> Response:
        rt = runtime(request)
        try:
            principal = await reader(rt.authenticator, request, allow_header=True)
        except RefusalError as refusal:
            rt.authenticator.audit(request, refusal)
            return _problem(refusal)
        (panels, as_of, db_failed), (pipeline, failed) = await asyncio.gather(
            rt.cache.get(), rt.probe.read()
        )
        unavailable = (["database"] if db_failed else []) + failed
        body = {
            "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "panels_as_of": as_of,
            "refresh_interval_s": settings.refresh_interval_s,
            "environment": settings.environment,
            "viewer": principal.subject,
            "panels": panels,
            "pipeline": pipeline,
            "unavailable": unavailable,
        }
        return _json(body, headers={"Cache-Control": "no-store"})

    return app
