"""``/v1/alerts``: the monitoring alerts the db-loader raises, and their case handling.

* ``GET /v1/alerts`` and ``GET /v1/alerts/{id}`` need ``transactions:read``. A caller sees
  the alerts on its own tenant's transactions (OWASP API1, as for transaction reads), with
  evidence that names no other merchant's transactions or amounts; a caller holding
  ``tenants:all`` (an operator) sees every alert, evidence whole. Another tenant's alert
  answers exactly like a missing one.
* ``PATCH /v1/alerts/{id}`` needs ``alerts:review`` and a person's token (reviewers are
  people), and moves the alert along its case states, within the caller's tenant scope
  like the reads; who comes from the token (subject and name), when from the database
  clock, and the database appends every change to the alert's audit trail (a trigger the
  api role cannot bypass: it may update only the case columns and cannot write the trail).
* Every route checks a request in one order, so that a caller who may not call it, or
  has called too often, gets no work done: a token in the URL (400), the token (401, 403;
  a review needs a person's), the caller's rate (429 with ``Retry-After``, one token a
  request per caller, the token's subject), then the body's size and type (a review's body
  is read within :data:`MAX_REVIEW_BYTES`, 413 past it; refused when not JSON, compressed or
  declared in another charset, 415, or not UTF-8, 400), then what the parameters and the
  body say (422; a ``since`` whose UTC time falls outside years 1-9999 is a 422, not a
  database error). Each route depends on :func:`_reader` or :func:`_reviewer`, which FastAPI
  solves before the route's parameters; a review's body is read by :func:`_review`, a
  dependency of the reviewer's, since FastAPI would read and parse a body parameter first.
* Every error answers ``application/problem+json`` (:mod:`ingest_api.problems`).

The reading and the status change are :mod:`cardstream_monitoring.alerts`, in a database
transaction scoped to the caller's tenant (:mod:`ingest_api.tenancy`); this module is the
HTTP side: scopes, limits, problems, the pool. Writes need a pool of their own: the
transaction reader's sessions are read-only by design.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

import msgspec
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, ValidationError

from cardstream_monitoring import alerts
from cardstream_monitoring.alerts import (
    MAX_ALERT_ID,
    AlertOut,
    AlertPage,
    AlertPatch,
    AlertSeverity,
    AlertStatus,
)
from cardstream_shared import resource_names as names
from cardstream_shared.jwt_auth import Principal
from cardstream_shared.repeated_keys import repeated_key_errors
from ingest_api import rate_limit
from ingest_api.auth import BearerAuth
from ingest_api.body import JSON, media_type, read_body
from ingest_api.database import DATABASE_ERRORS, DatabaseUnavailableError, LazyPool
from ingest_api.openapi_docs import problem, schema_ref
from ingest_api.problems import ProblemError
from ingest_api.runtime import Runtime
from ingest_api.tenancy import TenantScope, scoped

logger = logging.getLogger(__name__)

MAX_PAGE: Final = 500
# A review is a status and a note of at most MAX_NOTE_LENGTH characters: 16 KiB holds any
# valid one even with every character written as a JSON escape.
MAX_REVIEW_BYTES: Final = 16 * 1024

READ = BearerAuth(names.SCOPE_READ)
REVIEW = BearerAuth(names.SCOPE_ALERTS_REVIEW)


def _unavailable() -> ProblemError:
    return ProblemError(
        503,
        "unavailable",
        "alerts cannot be read right now; retry later",
        headers={"Retry-After": "5"},
    )


@contextlib.asynccontextmanager
async def _store_lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Runs inside the app's own lifespan, so the runtime (settings, secrets client) exists.
    # Read-write: PATCH changes an alert's status (the api role may update only that).
    store = LazyPool(
        app.state.runtime.settings,
        app.state.runtime.secrets,
        application_name="cardstream-ingest-api-alerts",
        read_only=False,
        min_size=0,
    )
    app.state.alert_store = store
    try:
        yield
    finally:
        await store.close()


router = APIRouter(prefix="/v1", tags=["alerts"], lifespan=_store_lifespan)

_URL_CREDENTIAL_DOC: Final = (
    "A query string naming `token`, `access_token` or `id_token` (`type: token-in-url`): a "
    "token is taken from the `Authorization` header only."
)
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: problem(_URL_CREDENTIAL_DOC),
    401: problem("Missing or invalid bearer token."),
    403: problem(
        "The token lacks `transactions:read`, or its client is neither a registered merchant"
        " nor an operator."
    ),
    422: problem("A parameter is not valid; `errors` names each (never its value)."),
    429: problem(
        "Too many requests from this caller (charged before the parameters are read); retry "
        "after `Retry-After` seconds."
    ),
    503: problem("The database is unreachable; retry after `Retry-After` seconds."),
}
_NOT_FOUND_DOC: Final = "No such alert, or one on another client's transaction (same answer)."
_DB_ERRORS: Final = (*DATABASE_ERRORS, DatabaseUnavailableError)


def _in_utc(value: dt.datetime | None) -> dt.datetime | None:
    """``value`` in UTC (a time without offset is UTC). A time with an offset whose UTC time
    falls outside years 1-9999 is the caller's mistake: refused here rather than failing
    in the database driver as if the database were unavailable."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("the time in UTC falls outside years 1 to 9999") from None


def _charged(request: Request, principal: Principal) -> Principal:
    """``principal`` once its request is charged to its bucket (429 when it cannot pay)."""
    runtime: Runtime = request.app.state.runtime
    rate_limit.enforce(
        runtime.alert_limiter,
        principal.subject,
        1,
        metrics=runtime.metrics,
        detail="too many alert requests from this caller; slow down",
    )
    return principal


async def _reader(request: Request, principal: Annotated[Principal, Security(READ)]) -> Principal:
    """The caller of a read, authenticated and charged."""
    return _charged(request, principal)


async def _reviewer(
    request: Request, principal: Annotated[Principal, Security(REVIEW)]
) -> Principal:
    """The caller of a review, authenticated (a person's token) and charged."""
    if principal.person is None:
        raise ProblemError(
            403, "forbidden", "alerts are reviewed by people: sign in as a user to review"
        )
    return _charged(request, principal)


def _tenant_scope(request: Request, principal: Principal) -> TenantScope:
    # BearerAuth leaves no registry entry for an operator's client.
    return TenantScope.of(principal, operator=request.state.merchant is None)


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def _review(
    request: Request, reviewer: Annotated[Principal, Depends(_reviewer)]
) -> AlertPatch:
    """The review in the body, read only once its caller is admitted (``reviewer``): within
    :data:`MAX_REVIEW_BYTES`, as UTF-8 JSON naming each key once, then validated."""
    if media_type(request) != JSON:
        raise ProblemError(415, "unsupported-media-type", "send application/json")
    body = await read_body(request, MAX_REVIEW_BYTES)
    # JSON is UTF-8 (RFC 8259 8.1), which never holds a raw NUL.
    if b"\0" in body or not _is_utf8(body):
        raise ProblemError(400, "encoding", "the body is not UTF-8 JSON")
    try:
        repeated = repeated_key_errors(body, msgspec.json.decode(body), prefix="body.")
    except (ValueError, RecursionError):
        # Not JSON: the model's reading below names what is wrong with it.
        repeated = []
    if repeated:
        # Which of a repeated key's values counts depends on the reader: neither does.
        raise ProblemError(422, "validation-error", "the request is not valid", errors=repeated)
    try:
        return AlertPatch.model_validate_json(body)
    except ValidationError as error:
        # Located in the body, as FastAPI locates the errors of a body parameter.
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_input=False)]
        ) from None


def _not_found() -> ProblemError:
    return ProblemError(404, "not-found", "no such alert")


@router.get(
    "/alerts",
    response_model=AlertPage,
    response_model_exclude_none=True,
    summary="List alerts, newest first",
    responses=_ERRORS,
)
async def list_alerts(
    request: Request,
    principal: Annotated[Principal, Depends(_reader)],
    status: AlertStatus | None = None,
    rule: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,62}$")] = None,
    severity: AlertSeverity | None = None,
    since: Annotated[
        dt.datetime | None, AfterValidator(_in_utc), Query(description="created at or after")
    ] = None,
    cursor: Annotated[
        int | None, Query(ge=1, le=MAX_ALERT_ID, description="next_cursor of the last page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> AlertPage:
    """Alerts filtered by status, rule, severity and creation time, a page at a time.

    A caller sees the alerts on its own transactions; with `tenants:all`, every alert.
    """
    scope = _tenant_scope(request, principal)
    store: LazyPool = request.app.state.alert_store
    try:
        pool = await store.get()
        async with scoped(pool, scope) as conn:
            return await alerts.list_alerts(
                conn,
                client_id=scope.only,
                status=status,
                rule=rule,
                severity=severity,
                since=since,
                cursor=cursor,
                limit=limit,
            )
    except _DB_ERRORS as exc:
        logger.warning("alert listing failed", extra={"error": type(exc).__name__})
        raise _unavailable() from None


@router.get(
    "/alerts/{alert_id}",
    response_model=AlertOut,
    response_model_exclude_none=True,
    summary="One alert with its audit trail",
    responses={**_ERRORS, 404: problem(_NOT_FOUND_DOC)},
)
async def get_alert(
    request: Request,
    principal: Annotated[Principal, Depends(_reader)],
    alert_id: Annotated[int, Path(ge=1, le=MAX_ALERT_ID)],
) -> AlertOut:
    """The alert, its evidence and every status change so far."""
    scope = _tenant_scope(request, principal)
    store: LazyPool = request.app.state.alert_store
    try:
        pool = await store.get()
        async with scoped(pool, scope) as conn:
            return await alerts.read_alert(conn, alert_id, client_id=scope.only)
    except alerts.AlertNotFoundError:
        raise _not_found() from None
    except _DB_ERRORS as exc:
        logger.warning("alert read failed", extra={"error": type(exc).__name__})
        raise _unavailable() from None


@router.patch(
    "/alerts/{alert_id}",
    response_model=AlertOut,
    response_model_exclude_none=True,
    summary="Change an alert's status (case handling)",
    responses={
        **_ERRORS,
        400: problem(f"{_URL_CREDENTIAL_DOC} Or the body is not UTF-8 or holds NUL."),
        403: problem(
            "The token lacks `alerts:review` or is not a person's, or its client is neither a "
            "registered merchant nor an operator."
        ),
        404: problem(_NOT_FOUND_DOC),
        409: problem("The alert cannot move from its current status to the one asked."),
        413: problem(f"The body exceeds {MAX_REVIEW_BYTES} bytes."),
        415: problem(
            "The body is not `application/json`, is declared in a charset other than UTF-8, or "
            "has a `Content-Encoding` (compressed bodies are not accepted)."
        ),
        422: problem(
            "The body or a parameter is not valid; `errors` names each field (never its "
            "value). A note holding a card number is refused with `type: card_number`, a key "
            "named twice with `type: duplicate_key`."
        ),
        429: problem(
            "Too many requests from this caller (charged before the body is read); retry "
            "after `Retry-After` seconds."
        ),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": schema_ref("AlertPatch")}},
        }
    },
)
async def patch_alert(
    request: Request,
    principal: Annotated[Principal, Depends(_reviewer)],
    alert_id: Annotated[int, Path(ge=1, le=MAX_ALERT_ID)],
    change: Annotated[AlertPatch, Depends(_review)],
) -> AlertOut:
    """Move the alert to `status`; the change is recorded with the person (the token's
    subject and name) and the time, in the alert's append-only audit trail."""
    scope = _tenant_scope(request, principal)
    store: LazyPool = request.app.state.alert_store
    try:
        pool = await store.get()
        async with scoped(pool, scope) as conn:
            await alerts.change_status(
                conn,
                alert_id,
                change,
                client_id=scope.only,
                changed_by=principal.subject,
                changed_by_name=principal.person,
            )
            logger.info(
                "alert status changed",
                extra={
                    "event": "alert_status_changed",
                    "alert_id": alert_id,
                    "status": change.status,
                    "subject": principal.subject,
                },
            )
            return await alerts.read_alert(conn, alert_id, client_id=scope.only)
    except alerts.AlertNotFoundError:
        raise _not_found() from None
    except alerts.TransitionRefusedError as exc:
        raise ProblemError(
            409,
            "invalid-transition",
            str(exc),
            extra={"current_status": exc.current, "allowed_from": exc.allowed_from},
        ) from None
    except _DB_ERRORS as exc:
        logger.warning("alert update failed", extra={"error": type(exc).__name__})
        raise _unavailable() from None
