"""Set-based rule evaluation in PostgreSQL over the rows one load inserted.

Every enabled rule is a SELECT over ``new`` (the rows the load just inserted) joined with
the card's recent history in ``cardstream.transaction`` itself, through the
``(card_token, trans_date_trans_time)`` index; there is no second copy of the data. All
rules run as one statement that inserts their alerts ``ON CONFLICT (trans_num, rule) DO
NOTHING`` and returns what it inserted. The loader calls it inside the load's transaction,
so an alert commits with the rows that raised it: a redelivered object is a no-op for
both, and a crash can lose neither one without the other.

History means the card's transactions at or before the one judged (by
``trans_date_trans_time``, the merchant's clock), whether they arrived in this load or an
earlier one. Burst rules (velocity, card testing, structuring) alert every transaction of
the burst once it is complete, including members loaded earlier: the case handler needs
the whole burst, and the first purchases of a card-testing run are as fraudulent as the
last. Values from the configuration travel as bind parameters, never as SQL text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import msgspec

from cardstream_monitoring.notifier import AlertNotice
from cardstream_monitoring.rules import Rules
from cardstream_shared.pan import mask_last4

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    # The connection of the load the rules run in: a pooled connection or a plain one.
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]

# The rows a load inserted, with the cardholder's home (the ZIP area's coordinates). Each
# row is fetched by its primary key: LIMIT 1 keeps the lookup a parameterised index scan
# (one partition per key), where a plain join lets the planner hash-join against every
# row of the months involved, a cost that grows with the table instead of the load.
_NEW: Final = """
new AS MATERIALIZED (
    SELECT t.trans_num, t.trans_date_trans_time AS ts, t.card_token, t.client_id, t.amt,
           t.category, t.merchant_id, t.merch_lat, t.merch_long, z.lat AS home_lat,
           z.long AS home_long
    FROM cardstream.transaction_key k
    CROSS JOIN LATERAL (
        SELECT * FROM cardstream.transaction x
        WHERE x.trans_num = k.trans_num AND x.trans_date_trans_time = k.trans_date_trans_time
        LIMIT 1
    ) t
    JOIN cardstream.customer cu ON cu.customer_id = t.customer_id
    JOIN cardstream.address a ON a.address_id = cu.address_id
    JOIN cardstream.zip_area z ON z.zip_area_id = a.zip_area_id
    WHERE k.trans_num = ANY($1::text[])
)"""

# What every rule's SELECT yields, in this order: the alerted transaction, its card and its
# tenant (the client that posted it), then the alert.
_COLUMNS: Final = "trans_num, card_token, client_id, rule, severity, score, evidence"

_INSERT: Final = """
inserted AS (
    INSERT INTO cardstream.alert
        (trans_num, card_token, client_id, rule, severity, score, evidence)
    SELECT DISTINCT ON (trans_num, rule)
           trans_num, card_token, client_id, rule, severity, least(score, 99999999.99), evidence
    FROM candidates
    -- Key order: concurrent loaders alerting the same earlier transaction wait for each
    -- other on the unique index instead of deadlocking.
    ORDER BY trans_num, rule, score DESC
    ON CONFLICT (trans_num, rule) DO NOTHING
    RETURNING alert_id, trans_num, rule, severity, score, evidence, card_token, created_at
)
SELECT i.alert_id, i.trans_num, i.rule, i.severity, i.score, i.evidence, i.created_at,
       c.card_last4, t.loaded_at, t.received_at
FROM inserted i
JOIN cardstream.card c ON c.card_token = i.card_token
JOIN cardstream.transaction_key k ON k.trans_num = i.trans_num
JOIN cardstream.transaction t
    ON t.trans_num = k.trans_num AND t.trans_date_trans_time = k.trans_date_trans_time
ORDER BY i.alert_id
"""


class _Params:
    """Collects bind parameters; ``add`` returns the typed placeholder to put in the SQL."""

    def __init__(self) -> None:
        self.values: list[Any] = [None]  # $1 is the list of inserted trans_num values

    def add(self, value: Any, cast: str) -> str:
        self.values.append(value)
        return f"${len(self.values)}::{cast}"


def _amount_spike(rules: Rules, p: _Params) -> str:
    r = rules.amount_spike
    mult = p.add(r.multiple, "float8")
    days = p.add(r.history_days, "int")
    return f"""
SELECT n.trans_num, n.card_token, n.client_id, 'amount_spike' AS rule,
       {p.add(r.severity, "text")} AS severity,
       round((n.amt / greatest({mult} * h.median, 0.01))::numeric, 2) AS score,
       jsonb_build_object('amount', n.amt, 'card_median', round(h.median::numeric, 2),
                          'history_count', h.n, 'history_days', {days}, 'multiple', {mult})
FROM new n
CROSS JOIN LATERAL (
    SELECT count(*) AS n, percentile_cont(0.5) WITHIN GROUP (ORDER BY p.amt) AS median
    FROM cardstream.transaction p
    WHERE p.card_token = n.card_token
      AND p.trans_date_trans_time < n.ts
      AND p.trans_date_trans_time >= n.ts - {days} * interval '1 day'
) h
WHERE n.amt >= {p.add(r.min_amount, "numeric")}
  AND h.n >= {p.add(r.min_history, "int")}
  AND n.amt >= {mult} * h.median"""  # noqa: S608


def _burst(
    rule: str,
    p: _Params,
    *,
    severity: str,
    window: dt.timedelta,
    min_count: int,
    min_merchants: int | None,
    amount_filter: str,
    extra_evidence: str,
) -> str:
    """Every transaction of a burst on one card: ``min_count`` or more (matching
    ``amount_filter``) within ``window`` ending at a newly inserted one."""
    window_p = p.add(window, "interval")
    count_p = p.add(min_count, "int")
    merchants = (
        f" AND w.merchants >= {p.add(min_merchants, 'int')}" if min_merchants is not None else ""
    )
    member = amount_filter.format(alias="m")
    in_window = (
        """{alias}.card_token = n.card_token
      AND {alias}.trans_date_trans_time <= n.ts
      AND {alias}.trans_date_trans_time >= n.ts - """
        + window_p
    )
    # Most rows start no burst: a bounded count (it stops at min_count) screens them before
    # the full aggregate and the join to the burst's members run.
    return f"""
SELECT m.trans_num, n.card_token, m.client_id, '{rule}' AS rule,
       {p.add(severity, "text")} AS severity,
       round(w.n::numeric / {count_p}, 2) AS score,
       jsonb_build_object('count', w.n, 'merchants', w.merchants, 'total_amount', w.total,
                          'window_start', n.ts - {window_p}, 'window_end', n.ts,
                          'trigger_trans_num', n.trans_num, 'min_count', {count_p}{extra_evidence})
FROM new n
CROSS JOIN LATERAL (
    SELECT count(*) AS n, count(DISTINCT b.merchant_id) AS merchants, sum(b.amt) AS total
    FROM cardstream.transaction b
    WHERE {in_window.format(alias="b")}
      AND {amount_filter.format(alias="b")}
) w
JOIN cardstream.transaction m
    ON {in_window.format(alias="m")}
   AND {member}
WHERE {amount_filter.format(alias="n")}
  AND (
    SELECT count(*) FROM (
        SELECT FROM cardstream.transaction s
        WHERE {in_window.format(alias="s")} AND {amount_filter.format(alias="s")}
        LIMIT {count_p}
    ) screened
  ) >= {count_p}
  AND w.n >= {count_p}{merchants}"""  # noqa: S608


def _velocity(rules: Rules, p: _Params) -> str:
    r = rules.velocity
    return _burst(
        "velocity",
        p,
        severity=r.severity,
        window=dt.timedelta(minutes=r.window_minutes),
        min_count=r.min_count,
        min_merchants=r.min_merchants,
        amount_filter="true",
        extra_evidence="",
    )


def _card_testing(rules: Rules, p: _Params) -> str:
    r = rules.card_testing
    limit = p.add(r.max_amount, "numeric")
    return _burst(
        "card_testing",
        p,
        severity=r.severity,
        window=dt.timedelta(minutes=r.window_minutes),
        min_count=r.min_count,
        min_merchants=r.min_merchants,
        amount_filter="{alias}.amt <= " + limit,
        extra_evidence=f", 'max_amount', {limit}",
    )


def _structuring(rules: Rules, p: _Params) -> str:
    r = rules.structuring
    floor = p.add(r.band_floor, "numeric")
    threshold = p.add(r.threshold, "numeric")
    return _burst(
        "structuring",
        p,
        severity=r.severity,
        window=dt.timedelta(hours=r.window_hours),
        min_count=r.min_count,
        min_merchants=None,
        amount_filter="{alias}.amt >= " + floor + " AND {alias}.amt < " + threshold,
        extra_evidence=f", 'threshold', {threshold}, 'band_floor', {floor}",
    )


def _night_high_value(rules: Rules, p: _Params) -> str:
    r = rules.night_high_value
    categories = p.add(list(r.min_amount), "text[]")
    amounts = p.add(list(r.min_amount.values()), "numeric[]")
    return f"""
SELECT n.trans_num, n.card_token, n.client_id, 'night_high_value' AS rule,
       {p.add(r.severity, "text")} AS severity,
       round(n.amt / greatest(l.min_amount, 0.01), 2) AS score,
       jsonb_build_object('amount', n.amt, 'category', n.category,
                          'hour', extract(hour FROM n.ts)::int, 'min_amount', l.min_amount)
FROM new n
JOIN unnest({categories}, {amounts}) AS l (category, min_amount) ON l.category = n.category
WHERE extract(hour FROM n.ts)::int = ANY({p.add(list(r.hours), "int[]")})
  AND n.amt >= l.min_amount"""  # noqa: S608


def _far_from_home(rules: Rules, p: _Params) -> str:
    r = rules.far_from_home
    min_km = p.add(r.min_km, "float8")
    habit = p.add(r.habit_multiple, "float8")
    days = p.add(r.history_days, "int")
    # The card's habit is measured from the cardholder's current home, so a move does not
    # make every purchase near the new home look far.
    return f"""
SELECT n.trans_num, n.card_token, n.client_id, 'far_from_home' AS rule,
       {p.add(r.severity, "text")} AS severity,
       round((d.km / greatest({min_km}, {habit} * coalesce(h.median_km, 0)))::numeric, 2),
       jsonb_build_object('distance_km', round(d.km::numeric, 1),
                          'card_median_km', round(h.median_km::numeric, 1),
                          'history_count', h.n, 'min_km', {min_km}, 'habit_multiple', {habit})
FROM new n
CROSS JOIN LATERAL (
    SELECT cardstream.haversine_km(n.home_lat, n.home_long, n.merch_lat, n.merch_long) AS km
) d
CROSS JOIN LATERAL (
    SELECT count(*) AS n,
           percentile_cont(0.5) WITHIN GROUP (
               ORDER BY cardstream.haversine_km(n.home_lat, n.home_long, p.merch_lat, p.merch_long)
           ) AS median_km
    FROM cardstream.transaction p
    WHERE p.card_token = n.card_token
      AND p.trans_date_trans_time < n.ts
      AND p.trans_date_trans_time >= n.ts - {days} * interval '1 day'
) h
WHERE d.km >= {min_km}
  AND (h.n < {p.add(r.min_history, "int")} OR d.km >= {habit} * h.median_km)"""  # noqa: S608


def _impossible_travel(rules: Rules, p: _Params) -> str:
    r = rules.impossible_travel
    max_speed = p.add(r.max_speed_kmh, "float8")
    min_km = p.add(r.min_km, "float8")
    # Two purchases too far apart for the time between them: the one near the cardholder's
    # home (closer than min_km) is presumed genuine, so the purchase back home after a
    # fraudulent one far away is not alerted, while a chain of far jumps is.
    return f"""
SELECT n.trans_num, n.card_token, n.client_id, 'impossible_travel' AS rule,
       {p.add(r.severity, "text")} AS severity,
       round((j.speed / {max_speed})::numeric, 2),
       jsonb_build_object('distance_km', round(j.km::numeric, 1),
                          'minutes', round(j.minutes::numeric, 1),
                          'speed_kmh', round(j.speed::numeric), 'previous_trans_num', j.trans_num,
                          'max_speed_kmh', {max_speed})
FROM new n
CROSS JOIN LATERAL (
    SELECT p.trans_num, x.km, x.minutes, x.km / greatest(x.minutes, 1) * 60 AS speed
    FROM cardstream.transaction p
    CROSS JOIN LATERAL (
        SELECT cardstream.haversine_km(p.merch_lat, p.merch_long, n.merch_lat, n.merch_long)
                   AS km,
               extract(epoch FROM n.ts - p.trans_date_trans_time)::float8 / 60 AS minutes
    ) x
    WHERE p.card_token = n.card_token
      AND p.trans_num <> n.trans_num
      AND p.trans_date_trans_time <= n.ts
      AND p.trans_date_trans_time >= n.ts - {p.add(r.lookback_hours, "int")} * interval '1 hour'
      AND x.km >= {min_km}
    ORDER BY speed DESC
    LIMIT 1
) j
WHERE cardstream.haversine_km(n.home_lat, n.home_long, n.merch_lat, n.merch_long) >= {min_km}
  AND j.speed > {max_speed}"""  # noqa: S608


_BUILDERS: Final = {
    "amount_spike": _amount_spike,
    "velocity": _velocity,
    "card_testing": _card_testing,
    "night_high_value": _night_high_value,
    "far_from_home": _far_from_home,
    "impossible_travel": _impossible_travel,
    "structuring": _structuring,
}


def build_statement(rules: Rules) -> tuple[str, list[Any]] | None:
    """The statement evaluating every enabled rule and its parameters after ``$1``;
    None when no rule is enabled."""
    enabled = rules.enabled()
    if not enabled:
        return None
    params = _Params()
    ctes = [_NEW]
    for name in enabled:
        ctes.append(f"c_{name} ({_COLUMNS}) AS ({_BUILDERS[name](rules, params)}\n)")
    union = "\n    UNION ALL ".join(
        f"SELECT {_COLUMNS} FROM c_{name}"  # noqa: S608
        for name in enabled
    )
    ctes.append(f"candidates ({_COLUMNS}) AS (\n    {union}\n)")
    sql = "WITH " + ",\n".join(ctes) + "," + _INSERT
    return sql, params.values[1:]


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    """An alert the statement inserted, with what the metrics and the notifier need."""

    alert_id: int
    trans_num: str
    rule: str
    severity: str
    score: Decimal
    evidence: dict[str, Any]
    created_at: dt.datetime
    card_last4: str
    # When the alerted transaction was loaded and when ingest-api accepted it.
    loaded_at: dt.datetime
    received_at: dt.datetime

    def notice(self) -> AlertNotice:
        """The webhook form: masked card, no personal data."""
        return AlertNotice(
            alert_id=self.alert_id,
            rule=self.rule,
            severity=self.severity,
            score=float(self.score),
            trans_num=self.trans_num,
            card_masked=mask_last4(self.card_last4),
            evidence=self.evidence,
            created_at=self.created_at.isoformat(),
        )


class RuleEngine:
    """The enabled rules as one prepared statement."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        built = build_statement(rules)
        self._sql, self._params = built if built is not None else ("", [])

    @property
    def active(self) -> bool:
        """False when every rule is disabled (evaluation is then skipped)."""
        return bool(self._sql)

    async def evaluate(self, conn: Connection, trans_nums: Sequence[str]) -> list[RaisedAlert]:
        """Raise the alerts ``trans_nums`` (rows already inserted on ``conn``) trip."""
        if not self._sql or not trans_nums:
            return []
        # The statement is prepared once per connection (asyncpg's statement cache), but
        # PostgreSQL would still plan it afresh for each load's values (measured: as long as
        # running it on 1,000 rows; figures in docs/benchmarks.md). The generic plan is made
        # once and prunes partitions at run time.
        # SET LOCAL ends with the transaction, also when the statement fails; the RESET
        # gives the loader's own statements after this hook their usual planning back.
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        rows = await conn.fetch(self._sql, list(trans_nums), *self._params)
        await conn.execute("RESET plan_cache_mode")
        return [
            RaisedAlert(
                alert_id=row["alert_id"],
                trans_num=row["trans_num"],
                rule=row["rule"],
                severity=row["severity"],
                score=row["score"],
                evidence=msgspec.json.decode(row["evidence"]),
                created_at=row["created_at"],
                card_last4=row["card_last4"],
                loaded_at=row["loaded_at"],
                received_at=row["received_at"],
            )
            for row in rows
        ]
