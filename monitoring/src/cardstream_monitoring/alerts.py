"""Reading alerts and moving them along their case states: what ``/v1/alerts`` serves.

Alerts are read through ``cardstream.tenant_alert_detail`` (card masked; evidence without
other merchants' transactions and amounts unless the session reads every tenant). Each
function takes the tenant whose alerts it may touch (None: every tenant) and filters on
it; the database's row-level security filters on the session's tenant as well (the
caller opens the connection's transaction with it). A status change is one ``UPDATE`` of
the case columns, which the api role alone may write; the database stamps the time and
appends the change to the alert's audit trail (migrations ``alerts_0001`` and
``alerts_0002``), so who and when cannot be left out or rewritten here.

The statements are fixed, with optional filters as NULL-able parameters: nothing from a
request becomes SQL text (OWASP API8).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cardstream_shared.contract import NO_NUL, Timestamp, refuse_card_numbers

if TYPE_CHECKING:
    import asyncpg

    from cardstream_monitoring.engine import Connection

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
# alert_id is a PostgreSQL bigint: a larger id cannot exist.
MAX_ALERT_ID: Final = 2**63 - 1
MAX_NOTE_LENGTH: Final = 1000
MAX_NAME_LENGTH: Final = 256

_COLUMNS: Final = """
alert_id, rule, severity, score, evidence, trans_num, trans_date_trans_time, amt, category,
merchant, card_masked, card_last4, status, status_changed_by, status_changed_by_name,
status_changed_at, status_note, created_at
"""
# Optional filters are NULL-able parameters $2-$6, the page size $7. A tenant's page names
# the tenant as a plain equality ($1), so that it is read from the tenant's own index range
# and takes as long whatever other tenants hold; an operator's page has no tenant ($1 is
# NULL and unused).
_FILTERS: Final = """
  AND ($2::text IS NULL OR status = $2)
  AND ($3::text IS NULL OR rule = $3)
  AND ($4::text IS NULL OR severity = $4)
  AND ($5::timestamptz IS NULL OR created_at >= $5)
  AND ($6::bigint IS NULL OR alert_id < $6)
ORDER BY alert_id DESC
LIMIT $7
"""
_LIST_TENANT: Final = f"""
SELECT {_COLUMNS} FROM cardstream.tenant_alert_detail WHERE client_id = $1 {_FILTERS}
"""  # noqa: S608 - only constant text is interpolated
_LIST_EVERY: Final = f"""
SELECT {_COLUMNS} FROM cardstream.tenant_alert_detail WHERE $1::text IS NULL {_FILTERS}
"""  # noqa: S608 - only constant text is interpolated
_ONE: Final = f"""
SELECT {_COLUMNS}
FROM cardstream.tenant_alert_detail
WHERE alert_id = $1 AND ($2::text IS NULL OR client_id = $2)
"""  # noqa: S608 - only the constant column list is interpolated
_HISTORY: Final = """
SELECT from_status, to_status, changed_by, changed_by_name, changed_at, note
FROM cardstream.alert_status_change
WHERE alert_id = $1 AND ($2::text IS NULL OR client_id = $2)
ORDER BY change_id
"""
_TRANSITION: Final = """
UPDATE cardstream.alert
SET status = $2, status_changed_by = $3, status_changed_by_name = $4, status_note = $5
WHERE alert_id = $1 AND status = ANY($6::text[]) AND ($7::text IS NULL OR client_id = $7)
RETURNING alert_id
"""
_CURRENT_STATUS: Final = """
SELECT status FROM cardstream.alert WHERE alert_id = $1 AND ($2::text IS NULL OR client_id = $2)
"""


class StatusChange(BaseModel):
    """One entry of an alert's audit trail."""

    from_status: AlertStatus
    to_status: AlertStatus
    changed_by: str = Field(description="The token's subject.")
    changed_by_name: str | None = Field(
        default=None, description="The person's name (user tokens; none for a client's)."
    )
    changed_at: dt.datetime
    note: str | None = None


class AlertOut(BaseModel):
    """An alert with the figures that raised it; the card is masked."""

    alert_id: int
    rule: str
    severity: AlertSeverity
    score: Decimal = Field(description="How far past its threshold the rule was (1 = at it).")
    evidence: dict[str, Any] = Field(
        description="The figures that tripped the rule. For a caller reading one tenant,"
        " without what belongs to other merchants of the card: no transaction of another"
        " client, no amount summed or taken over its other purchases."
    )
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
    status_changed_by_name: str | None = None
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
    # PostgreSQL text cannot hold NUL: a note with one would fail in the database.
    note: str | None = Field(default=None, max_length=MAX_NOTE_LENGTH, pattern=NO_NUL)

    @field_validator("note")
    @classmethod
    def _no_card_number(cls, note: str | None) -> str | None:
        # A note is stored and shown to reviewers: a card number in it would be in clear.
        return None if note is None else refuse_card_numbers(note)


class AlertNotFoundError(LookupError):
    """No alert with this id (or none the caller may see)."""


class TransitionRefusedError(Exception):
    """The alert's current status does not allow the status asked for."""

    def __init__(self, current: str, wanted: str) -> None:
        super().__init__(f"an alert in status {current!r} cannot become {wanted!r}")
        self.current = current
        self.allowed_from = ALLOWED_FROM[wanted]


def _alert(row: asyncpg.Record, history: list[asyncpg.Record] | None = None) -> AlertOut:
    data = dict(row)
    evidence = data["evidence"]
    data["evidence"] = dict(
        msgspec.json.decode(evidence) if isinstance(evidence, str | bytes) else evidence
    )
    if history is not None:
        data["history"] = [StatusChange(**dict(h)) for h in history]
    return AlertOut(**data)


async def list_alerts(
    conn: Connection,
    *,
    client_id: str | None,
    status: AlertStatus | None = None,
    rule: str | None = None,
    severity: AlertSeverity | None = None,
    since: dt.datetime | None = None,
    cursor: int | None = None,
    limit: int,
) -> AlertPage:
    """A page of alerts, newest first, of ``client_id``'s transactions (None: every client)."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    statement = _LIST_EVERY if client_id is None else _LIST_TENANT
    rows = await conn.fetch(statement, client_id, status, rule, severity, since, cursor, limit)
    items = [_alert(row) for row in rows]
    next_cursor = items[-1].alert_id if len(items) == limit else None
    return AlertPage(items=items, next_cursor=next_cursor)


async def read_alert(conn: Connection, alert_id: int, *, client_id: str | None) -> AlertOut:
    """The alert with its audit trail; :class:`AlertNotFoundError` when the caller (of
    tenant ``client_id``, None: every tenant) may not see it or it does not exist."""
    row = await conn.fetchrow(_ONE, alert_id, client_id)
    if row is None:
        raise AlertNotFoundError(alert_id)
    return _alert(row, await conn.fetch(_HISTORY, alert_id, client_id))


async def change_status(
    conn: Connection,
    alert_id: int,
    change: AlertPatch,
    *,
    client_id: str | None,
    changed_by: str,
    changed_by_name: str | None,
) -> None:
    """Move the alert (of tenant ``client_id``, None: any) to ``change.status`` in the
    name of ``changed_by`` (the token's subject) and ``changed_by_name`` (the person).

    Raises :class:`AlertNotFoundError` or :class:`TransitionRefusedError`.
    """
    # One statement: the status check and the change cannot interleave with another
    # reviewer's change of the same alert.
    updated = await conn.fetchval(
        _TRANSITION,
        alert_id,
        change.status,
        changed_by,
        changed_by_name[:MAX_NAME_LENGTH] if changed_by_name else None,
        change.note,
        list(ALLOWED_FROM[change.status]),
        client_id,
    )
    if updated is None:
        current = await conn.fetchval(_CURRENT_STATUS, alert_id, client_id)
        if current is None:
            raise AlertNotFoundError(alert_id)
        raise TransitionRefusedError(current, change.status)
