"""``/v1/alerts``: the monitoring alerts the db-loader raises, and their case handling.

* ``GET /v1/alerts`` and ``GET /v1/alerts/{id}`` need ``transactions:read``. A caller sees
  the alerts on its own transactions (OWASP API1, as for transaction reads); a caller that
  also holds ``alerts:review`` is a case handler of the institution and sees every alert.
* ``PATCH /v1/alerts/{id}`` needs ``alerts:review`` and moves the alert along its case
  states; who comes from the token's subject, when from the database clock, and the
  database appends every change to the alert's audit trail (a trigger the api role cannot
  bypass: it may update only the status columns and cannot write the trail itself).

Alerts are read through ``cardstream.alert_detail`` (card masked). Writes need a pool of
their own: the transaction reader's sessions are read-only by design.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

import asyncpg
import orjson
from fastapi import APIRouter, FastAPI, Path, Query, Request, Security
from pydantic import BaseModel, ConfigDict, Field

from cardstream_shared import resource_names as names
from cardstream_shared.contract import Timestamp
from cardstream_shared.jwt_auth import Principal
from ingest_api.auth import BearerAuth
from ingest_api.database import DATABASE_ERRORS, DatabaseUnavailableError, LazyPool
from ingest_api.models import Problem
from ingest_api.problems import PROBLEM_MEDIA_TYPE, ProblemError

logger = logging.getLogger(__name__)

AlertStatus = Literal["open", "reviewed", "dismissed", "escalated"]
AlertSeverity = Literal["low", "medium", "high"]

# Case handling: which states an alert may come from to reach each state. An escalated
# alert has been handed to investigators; it is closed (dismissed) or reviewed, not reopened.
ALLOWED_FROM: Final[dict[str, tuple[str, ...]]] = {
    "reviewed": ("open", "escalated"),
    "escalated": ("open", "reviewed"),
    "dismissed": ("open", "reviewed", "escalated"),
    "open": ("reviewed", "dismissed"),
}
MAX_PAGE: Final = 500

READ = BearerAuth(names.SCOPE_READ)
REVIEW = BearerAuth(names.SCOPE_ALERTS_REVIEW)

_COLUMNS: Final = """
alert_id, rule, severity, score, evidence, trans_num, trans_date_trans_time, amt, category,
merchant, card_masked, card_last4, status, status_changed_by, status_changed_at, status_note,
created_at
"""
# Fixed statements with optional filters as NULL-able parameters: nothing from the request
# becomes SQL text (OWASP API8). $1 is the caller's client id, or NULL for a reviewer.
_LIST: Final = f"""
SELECT {_COLUMNS}
FROM cardstream.alert_detail
WHERE ($1::text IS NULL OR client_id = $1)
  AND ($2::text IS NULL OR status = $2)
  AND ($3::text IS NULL OR rule = $3)
  AND ($4::text IS NULL OR severity = $4)
  AND ($5::timestamptz IS NULL OR created_at >= $5)
  AND ($6::bigint IS NULL OR alert_id < $6)
ORDER BY alert_id DESC
LIMIT $7
"""  # noqa: S608 - only the constant column list is interpolated
_ONE: Final = f"""
SELECT {_COLUMNS}
FROM cardstream.alert_detail
WHERE alert_id = $1 AND ($2::text IS NULL OR client_id = $2)
"""  # noqa: S608 - only the constant column list is interpolated
_HISTORY: Final = """
SELECT from_status, to_status, changed_by, changed_at, note
FROM cardstream.alert_status_change
WHERE alert_id = $1
ORDER BY change_id
"""
_TRANSITION: Final = """
UPDATE cardstream.alert
SET status = $2, status_changed_by = $3, status_note = $4
WHERE alert_id = $1 AND status = ANY($5::text[])
RETURNING alert_id
"""
_CURRENT_STATUS: Final = "SELECT status FROM cardstream.alert WHERE alert_id = $1"


class StatusChange(BaseModel):
    """One entry of an alert's audit trail."""

    from_status: AlertStatus
    to_status: AlertStatus
    changed_by: str
    changed_at: dt.datetime
    note: str | None = None


class AlertOut(BaseModel):
    """An alert with the figures that raised it; the card is masked."""

    alert_id: int
    rule: str
    severity: AlertSeverity
    score: Decimal = Field(description="How far past its threshold the rule was (1 = at it).")
    evidence: dict[str, Any] = Field(description="The figures that tripped the rule.")
    trans_num: str
    # The contract's form, as GET /v1/transactions/{trans_num} answers it.
    trans_date_trans_time: Timestamp = Field(examples=["2019-01-01 00:00:18"])
    amt: Decimal
    category: str
    merchant: str
    card_masked: str
    card_last4: str
    status: AlertStatus
    status_changed_by: str | None = None
    status_changed_at: dt.datetime | None = None
    status_note: str | None = None
    created_at: dt.datetime
    history: list[StatusChange] | None = Field(
        default=None, description="The audit trail (single-alert responses only)."
    )


class AlertPage(BaseModel):
    """A page of alerts, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[AlertOut]
    next_cursor: int | None = None


class AlertPatch(BaseModel):
    """A case-handling decision."""

    model_config = ConfigDict(extra="forbid")

    status: AlertStatus
    note: str | None = Field(default=None, max_length=1000)


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


# alert_id is a PostgreSQL bigint: a larger id cannot exist, so it is a 422, not a database error.
BIGINT_MAX: Final = 2**63 - 1

router = APIRouter(prefix="/v1", tags=["alerts"], lifespan=_store_lifespan)


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}}


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _problem("Missing or invalid bearer token."),
    403: _problem("The token lacks the required scope."),
    422: _problem("The input is not valid; `errors` names each field."),
    503: _problem("The database is unreachable; retry after `Retry-After` seconds."),
}
_DB_ERRORS: Final = (*DATABASE_ERRORS, DatabaseUnavailableError)


def _scope_client(principal: Principal) -> str | None:
    """The client whose alerts the caller may see; None: every alert (a case handler)."""
    return None if names.SCOPE_ALERTS_REVIEW in principal.scopes else principal.client_id


def _alert(row: asyncpg.Record, history: list[asyncpg.Record] | None = None) -> AlertOut:
    data = dict(row)
    data["evidence"] = _json(data["evidence"])
    if history is not None:
        data["history"] = [StatusChange(**dict(h)) for h in history]
    return AlertOut(**data)


def _json(value: Any) -> dict[str, Any]:
    loaded = orjson.loads(value) if isinstance(value, str | bytes) else value
    return dict(loaded)


@router.get(
    "/alerts",
    response_model=AlertPage,
    response_model_exclude_none=True,
    summary="List alerts, newest first",
    responses=_ERRORS,
)
async def list_alerts(
    request: Request,
    principal: Annotated[Principal, Security(READ)],
    status: AlertStatus | None = None,
    rule: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,62}$")] = None,
    severity: AlertSeverity | None = None,
    since: Annotated[dt.datetime | None, Query(description="created at or after")] = None,
    cursor: Annotated[
        int | None, Query(ge=1, le=BIGINT_MAX, description="next_cursor of the last page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> AlertPage:
    """Alerts filtered by status, rule, severity and creation time, a page at a time."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    store: LazyPool = request.app.state.alert_store
    try:
        pool = await store.get()
        rows = await pool.fetch(
            _LIST, _scope_client(principal), status, rule, severity, since, cursor, limit
        )
    except _DB_ERRORS as exc:
        logger.warning("alert listing failed", extra={"error": type(exc).__name__})
        raise _unavailable() from None
    items = [_alert(row) for row in rows]
    next_cursor = items[-1].alert_id if len(items) == limit else None
    return AlertPage(items=items, next_cursor=next_cursor)


async def _read_one(pool: asyncpg.Pool, alert_id: int, client: str | None) -> AlertOut:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(_ONE, alert_id, client)
        if row is None:
            raise ProblemError(404, "not-found", "no such alert")
        history = await conn.fetch(_HISTORY, alert_id)
    return _alert(row, history)


@router.get(
    "/alerts/{alert_id}",
    response_model=AlertOut,
    response_model_exclude_none=True,
    summary="One alert with its audit trail",
    responses={**_ERRORS, 404: _problem("No such alert (or not yours).")},
)
async def get_alert(
    request: Request,
    principal: Annotated[Principal, Security(READ)],
    alert_id: Annotated[int, Path(ge=1, le=BIGINT_MAX)],
) -> AlertOut:
    """The alert, its evidence and every status change so far."""
    store: LazyPool = request.app.state.alert_store
    try:
        return await _read_one(await store.get(), alert_id, _scope_client(principal))
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
        404: _problem("No such alert."),
        409: _problem("The alert cannot move from its current status to the one asked."),
    },
)
async def patch_alert(
    request: Request,
    principal: Annotated[Principal, Security(REVIEW)],
    alert_id: Annotated[int, Path(ge=1, le=BIGINT_MAX)],
    change: AlertPatch,
) -> AlertOut:
    """Move the alert to ``status``; the change is recorded with the caller and the time."""
    store: LazyPool = request.app.state.alert_store
    try:
        pool = await store.get()
        async with pool.acquire() as conn:
            # One statement: the status check and the change cannot interleave with another
            # reviewer's change of the same alert.
            updated = await conn.fetchval(
                _TRANSITION,
                alert_id,
                change.status,
                principal.subject,
                change.note,
                list(ALLOWED_FROM[change.status]),
            )
            if updated is None:
                current = await conn.fetchval(_CURRENT_STATUS, alert_id)
                if current is None:
                    raise ProblemError(404, "not-found", "no such alert")
                raise ProblemError(
                    409,
                    "invalid-transition",
                    f"an alert in status {current!r} cannot become {change.status!r}",
                    extra={"current_status": current, "allowed_from": ALLOWED_FROM[change.status]},
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
        return await _read_one(pool, alert_id, None)
    except _DB_ERRORS as exc:
        logger.warning("alert update failed", extra={"error": type(exc).__name__})
        raise _unavailable() from None
