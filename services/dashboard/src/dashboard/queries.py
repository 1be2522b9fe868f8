"""Every panel's data, read from the cardstream.dash_* views in one consistent snapshot.

All statements run in one REPEATABLE READ read-only transaction, so the totals, the top-5
lists and the trends describe the same set of rows even while the loader commits. Amounts
leave as strings with two decimals (exact, as the database holds them); the page formats
them for display.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

JsonDict = dict[str, Any]

TOP_N = 5
FRAUD_CASES = 10
LATEST_ALERTS = 8


@dataclass(frozen=True, slots=True)
class Limits:
    """How much of each series the page shows."""

    map_max_locations: int
    hourly_trend_hours: int
    daily_trend_days: int
    freshness_window_minutes: int


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            # Transaction times are local wall-clock times as sent, without a zone.
            return value.isoformat(timespec="seconds")
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _row(record: asyncpg.Record) -> JsonDict:
    out = {key: _plain(value) for key, value in record.items()}
    # Rates are ratios for display; amounts stay exact strings.
    if out.get("fraud_rate") is not None:
        out["fraud_rate"] = float(out["fraud_rate"])
    return out


async def read_panels(
    conn: asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
    limits: Limits,
) -> JsonDict:
    """Every panel of the page, from one snapshot of the views."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        totals = await conn.fetchrow(
            "SELECT transactions, fraud_transactions, unlabelled_transactions, amount,"
            " fraud_amount, fraud_rate, states, first_transaction_at, last_transaction_at"
            " FROM cardstream.dash_totals"
        )
        assert totals is not None  # an aggregate without GROUP BY always returns one row
        last_txn: dt.datetime | None = totals["last_transaction_at"]
        top_states = await conn.fetch(
            "SELECT state, transactions, fraud_transactions, unlabelled_transactions, amount,"
            " fraud_amount, fraud_rate FROM cardstream.dash_fraud_by_state"
            " WHERE fraud_rank <= $1 AND fraud_transactions > 0 ORDER BY fraud_rank",
            TOP_N,
        )
        top_merchants = await conn.fetch(
            "SELECT merchant, transactions, fraud_transactions, unlabelled_transactions, amount,"
            " fraud_amount, fraud_rate FROM cardstream.dash_fraud_by_merchant"
            " WHERE fraud_rank <= $1 AND fraud_transactions > 0 ORDER BY fraud_rank",
            TOP_N,
        )
        categories = await conn.fetch(
            "SELECT category, transactions, fraud_transactions, unlabelled_transactions, amount,"
            " fraud_amount, fraud_rate FROM cardstream.dash_fraud_by_category"
            " ORDER BY fraud_rank"
        )
        # The busiest cells first, so a cap keeps what matters on the map.
        locations = await conn.fetch(
            "SELECT state, lat, long, transactions, fraud_transactions"
            " FROM cardstream.dash_fraud_by_location"
            " ORDER BY fraud_transactions DESC, transactions DESC, state, lat, long LIMIT $1",
            limits.map_max_locations,
        )
        location_count = await conn.fetchval(
            "SELECT count(*) FROM cardstream.dash_fraud_by_location"
        )
        hourly: list[asyncpg.Record] = []
        daily: list[asyncpg.Record] = []
        if last_txn is not None:
            # Trends end at the latest transaction, not at the clock: replayed history (the
            # published data is from 2019-2020) still shows its own last hours and days.
            hourly = await conn.fetch(
                "SELECT hour, transactions, fraud_transactions, amount, fraud_amount"
                " FROM cardstream.dash_volume_hourly WHERE hour > $1 ORDER BY hour",
                last_txn - dt.timedelta(hours=limits.hourly_trend_hours),
            )
            daily = await conn.fetch(
                "SELECT day, transactions, fraud_transactions, amount, fraud_amount"
                " FROM cardstream.dash_volume_daily WHERE day > $1 ORDER BY day",
                last_txn.date() - dt.timedelta(days=limits.daily_trend_days),
            )
        hour_of_day = await conn.fetch(
            "SELECT hour_of_day, transactions, fraud_transactions, fraud_rate"
            " FROM cardstream.dash_fraud_by_hour_of_day ORDER BY hour_of_day"
        )
        freshness = await conn.fetchrow(
            "SELECT last_received_at, last_loaded_at, recent_rows, receipt_to_load_p50_s,"
            " receipt_to_load_p95_s, receipt_to_load_max_s FROM cardstream.dash_freshness"
        )
        assert freshness is not None
        by_minute: list[asyncpg.Record] = []
        if freshness["last_loaded_at"] is not None:
            by_minute = await conn.fetch(
                "SELECT minute, rows_loaded, receipt_to_load_p50_s, receipt_to_load_max_s"
                " FROM cardstream.dash_freshness_by_minute WHERE minute > $1 ORDER BY minute",
                freshness["last_loaded_at"] - dt.timedelta(minutes=limits.freshness_window_minutes),
            )
        # Newest first: the transaction_time index serves it without reading the whole table.
        fraud_cases = await conn.fetch(
            "SELECT trans_num, trans_date_trans_time, card_masked, merchant, category, amt,"
            " state FROM cardstream.dash_fraud_transactions"
            " ORDER BY trans_date_trans_time DESC, trans_num LIMIT $1",
            FRAUD_CASES,
        )
        # Alerts raised by the loader's rules, for case handling.
        open_alerts = await conn.fetch(
            "SELECT rule, severity, open_alerts, latest_created_at"
            " FROM cardstream.dash_alerts_open ORDER BY rule, severity"
        )
        latest_alerts = await conn.fetch(
            "SELECT alert_id, created_at, rule, severity, score, status, trans_num,"
            " trans_date_trans_time, amt, category, merchant, card_masked, evidence"
            " FROM cardstream.dash_alerts_latest ORDER BY alert_id DESC LIMIT $1",
            LATEST_ALERTS,
        )
        pipeline = await conn.fetchrow(
            "SELECT objects_loaded, last_object_loaded_at, rows_received, rows_duplicate,"
            " rows_quarantined, last_quarantined_at FROM cardstream.dash_pipeline"
        )
        assert pipeline is not None
    return {
        "totals": _row(totals),
        "top_fraud_states": [_row(r) for r in top_states],
        "top_fraud_merchants": [_row(r) for r in top_merchants],
        "fraud_by_category": [_row(r) for r in categories],
        "latest_fraud": [_row(r) for r in fraud_cases],
        "open_alerts": [_row(r) for r in open_alerts],
        "latest_alerts": [_row(r) for r in latest_alerts],
        "locations": {
            "cells": [_row(r) for r in locations],
            "total_cells": int(location_count or 0),
        },
        "trend_hourly": [_row(r) for r in hourly],
        "trend_daily": [_row(r) for r in daily],
        "fraud_by_hour_of_day": [_row(r) for r in hour_of_day],
        "freshness": _row(freshness),
        "freshness_by_minute": [_row(r) for r in by_minute],
        "loads": _row(pipeline),
    }
