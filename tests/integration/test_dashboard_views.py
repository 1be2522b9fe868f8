"""The dashboard's analytics views (cardstream.dash_*) on crafted rows in real PostgreSQL.

Rows are inserted as the superuser straight into the normalized tables, so each test knows
exactly what the views must answer; the views are then read as the dashboard role, the
way the dashboard reads them (the analyst role, for BI tools, reads them too).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from cardstream_shared import resource_names as names
from db_loader.migrate import bootstrap, with_credentials

pytestmark = pytest.mark.integration

UTC = dt.UTC
_NS = uuid.UUID("5f1d7a52-3c1e-4d0b-9a59-8f8d0f0f6a11")


def _id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(_NS, "|".join(str(p) for p in parts))


@dataclass(frozen=True)
class Txn:
    trans_num: str
    when: dt.datetime
    amt: str
    is_fraud: int | None = 0
    state: str = "NY"
    city: str = "Albany"
    lat: float = 42.6526
    long: float = -73.7562
    merchant: str = "fraud_Kirlin and Sons"
    category: str = "grocery_pos"
    received_at: dt.datetime = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    lag_s: float = 2.0


class Db:
    """Superuser connection for crafting rows; dashboard connection for reading views."""

    def __init__(self, admin: psycopg.Connection[Any], dashboard_dsn: str) -> None:
        self.admin = admin
        self.dashboard_dsn = dashboard_dsn
        self._object_id: int | None = None

    def object_id(self) -> int:
        if self._object_id is None:
            row = self.admin.execute(
                "INSERT INTO cardstream.object_ledger (bucket, key, etag, row_count)"
                " VALUES ('b', 'raw/x.jsonl.gz', 'e', 0) RETURNING object_id"
            ).fetchone()
            assert row is not None
            self._object_id = int(row[0])
        return self._object_id

    def insert(self, *txns: Txn) -> None:
        conn = self.admin
        for t in txns:
            city_id = _id("city", t.city, t.state)
            zip_id = _id("zip", t.city, t.lat, t.long)
            address_id = _id("address", t.city, t.lat)
            customer_id = _id("customer", t.city, t.lat)
            merchant_id = _id("merchant", t.merchant)
            token = uuid.uuid5(_NS, t.trans_num).hex * 2
            conn.execute(
                "INSERT INTO cardstream.city VALUES (%s, %s, %s, 1000) ON CONFLICT DO NOTHING",
                (city_id, t.city, t.state),
            )
            conn.execute(
                "INSERT INTO cardstream.zip_area VALUES (%s, '12207', %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (zip_id, city_id, t.lat, t.long),
            )
            conn.execute(
                "INSERT INTO cardstream.address VALUES (%s, '1 Main St', %s)"
                " ON CONFLICT DO NOTHING",
                (address_id, zip_id),
            )
            conn.execute(
                "INSERT INTO cardstream.customer VALUES"
                " (%s, 'Ann', 'Lee', 'F', '1980-01-01', 'Engineer', %s) ON CONFLICT DO NOTHING",
                (customer_id, address_id),
            )
            conn.execute(
                "INSERT INTO cardstream.card VALUES (%s, '1234', 'v1') ON CONFLICT DO NOTHING",
                (token,),
            )
            conn.execute(
                "INSERT INTO cardstream.merchant VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (merchant_id, t.merchant),
            )
            conn.execute(
                "INSERT INTO cardstream.category VALUES (%s) ON CONFLICT DO NOTHING",
                (t.category,),
            )
            conn.execute("SELECT cardstream.ensure_transaction_partition(%s)", (t.when.date(),))
            conn.execute(
                "INSERT INTO cardstream.transaction_key VALUES (%s, %s)", (t.trans_num, t.when)
            )
            conn.execute(
                "INSERT INTO cardstream.transaction (trans_num, trans_date_trans_time, unix_time,"
                " amt, category, merchant_id, merch_lat, merch_long, card_token, customer_id,"
                " is_fraud, ingest_id, client_id, received_at, object_id, loaded_at)"
                " VALUES (%s, %s, 0, %s, %s, %s, 40.0, -74.0, %s, %s, %s, %s, 'merchant-app',"
                " %s, %s, %s)",
                (
                    t.trans_num,
                    t.when,
                    Decimal(t.amt),
                    t.category,
                    merchant_id,
                    token,
                    customer_id,
                    t.is_fraud,
                    uuid.uuid4(),
                    t.received_at,
                    self.object_id(),
                    t.received_at + dt.timedelta(seconds=t.lag_s),
                ),
            )

    def view(self, sql: str) -> list[dict[str, Any]]:
        with psycopg.connect(self.dashboard_dsn, row_factory=dict_row) as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture
def db(empty_database: str) -> Iterator[Db]:
    password = uuid.uuid4().hex
    bootstrap(empty_database, role_passwords={names.DB_DASHBOARD_ROLE: password})
    dashboard = with_credentials(empty_database, names.DB_DASHBOARD_ROLE, password)
    with psycopg.connect(empty_database, autocommit=True) as admin:
        yield Db(admin, dashboard)


T0 = dt.datetime(2026, 3, 14, 9, 30, 0)


def test_totals_count_amount_fraud_and_states(db: Db) -> None:
    db.insert(
        Txn("a1", T0, "10.50", 0, state="NY"),
        Txn("a2", T0 + dt.timedelta(hours=1), "20.25", 1, state="NY"),
        Txn("a3", T0 + dt.timedelta(days=40), "100.00", 1, state="TX", city="Austin", lat=30.2),
        Txn("a4", T0 + dt.timedelta(days=1), "5.00", None, state="CA", city="Fresno", lat=36.7),
    )

    (totals,) = db.view("SELECT * FROM cardstream.dash_totals")

    assert totals["transactions"] == 4
    assert totals["amount"] == Decimal("135.75")
    assert totals["fraud_transactions"] == 2
    assert totals["fraud_amount"] == Decimal("120.25")
    assert totals["unlabelled_transactions"] == 1
    assert totals["states"] == 3
    # Two fraud among three labelled transactions; the unlabelled one is not legitimate.
    assert totals["fraud_rate"] == Decimal("0.666667")
    assert totals["first_transaction_at"] == T0
    assert totals["last_transaction_at"] == T0 + dt.timedelta(days=40)


def test_totals_of_an_empty_database_are_zero(db: Db) -> None:
    (totals,) = db.view("SELECT * FROM cardstream.dash_totals")
    assert (totals["transactions"], totals["amount"], totals["states"]) == (0, Decimal("0.00"), 0)
    assert totals["fraud_rate"] is None


def test_top_five_merchants_by_fraud_count_with_deterministic_ties(db: Db) -> None:
    # fraud counts: m1 4, m2 3, m3 3 (more fraud amount than m2), m4 2, m5 2 (same amount as
    # m4: name decides), m6 1, m7 0 with the most transactions.
    plan = {"m1": [50] * 4, "m2": [10] * 3, "m3": [30] * 3, "m4": [5, 5], "m5": [5, 5], "m6": [9]}
    txns = []
    for merchant, amounts in plan.items():
        for i, amount in enumerate(amounts):
            txns.append(Txn(f"{merchant}-{i}", T0, str(amount), 1, merchant=f"fraud_{merchant}"))
    txns += [Txn(f"m7-{i}", T0, "1.00", 0, merchant="fraud_m7") for i in range(8)]
    db.insert(*txns)

    top = db.view(
        "SELECT merchant, fraud_transactions, fraud_amount, transactions"
        " FROM cardstream.dash_fraud_by_merchant WHERE fraud_rank <= 5 ORDER BY fraud_rank"
    )

    assert [(r["merchant"], r["fraud_transactions"]) for r in top] == [
        ("fraud_m1", 4),
        ("fraud_m3", 3),
        ("fraud_m2", 3),
        ("fraud_m4", 2),
        ("fraud_m5", 2),
    ]
    assert top[0]["fraud_amount"] == Decimal("200.00")
    everything = db.view("SELECT merchant, fraud_rank FROM cardstream.dash_fraud_by_merchant")
    assert {r["merchant"]: r["fraud_rank"] for r in everything}["fraud_m7"] == 7


def test_top_states_rank_by_fraud_count_not_volume(db: Db) -> None:
    db.insert(
        *[Txn(f"ny{i}", T0, "10.00", 0, state="NY") for i in range(20)],
        Txn("ny-f", T0, "10.00", 1, state="NY"),
        *[Txn(f"tx{i}", T0, "10.00", 1, state="TX", city="Austin", lat=30.27) for i in range(3)],
        *[Txn(f"fl{i}", T0, "10.00", 1, state="FL", city="Miami", lat=25.76) for i in range(2)],
    )

    rows = db.view(
        "SELECT state, transactions, fraud_transactions, fraud_rate, fraud_rank"
        " FROM cardstream.dash_fraud_by_state ORDER BY fraud_rank"
    )

    assert [(r["state"], r["fraud_transactions"], r["transactions"]) for r in rows] == [
        ("TX", 3, 3),
        ("FL", 2, 2),
        ("NY", 1, 21),
    ]
    assert rows[2]["fraud_rate"] == Decimal("0.047619")


def test_fraud_by_category_counts_and_rates_over_labelled_rows(db: Db) -> None:
    db.insert(
        Txn("c1", T0, "1.00", 1, category="shopping_net"),
        Txn("c2", T0, "2.00", 1, category="shopping_net"),
        Txn("c3", T0, "3.00", 0, category="shopping_net"),
        Txn("c4", T0, "4.00", None, category="shopping_net"),
        Txn("c5", T0, "5.00", 0, category="grocery_pos"),
    )

    rows = db.view(
        "SELECT category, transactions, fraud_transactions, unlabelled_transactions,"
        " fraud_amount, fraud_rate, fraud_rank FROM cardstream.dash_fraud_by_category"
        " ORDER BY fraud_rank"
    )

    assert rows == [
        {
            "category": "shopping_net",
            "transactions": 4,
            "fraud_transactions": 2,
            "unlabelled_transactions": 1,
            "fraud_amount": Decimal("3.00"),
            "fraud_rate": Decimal("0.666667"),
            "fraud_rank": 1,
        },
        {
            "category": "grocery_pos",
            "transactions": 1,
            "fraud_transactions": 0,
            "unlabelled_transactions": 0,
            "fraud_amount": Decimal("0.00"),
            "fraud_rate": Decimal("0.000000"),
            "fraud_rank": 2,
        },
    ]


def test_locations_are_rounded_to_a_tenth_of_a_degree(db: Db) -> None:
    db.insert(
        Txn("l1", T0, "1.00", 1, city="Albany", lat=42.6526, long=-73.7562),
        # A second home 2 km away lands in the same 0.1-degree cell.
        Txn("l2", T0, "2.00", 0, city="Albany East", lat=42.6611, long=-73.7789),
        Txn("l3", T0, "3.00", 0, state="TX", city="Austin", lat=30.2672, long=-97.7431),
    )

    rows = db.view(
        "SELECT state, lat, long, transactions, fraud_transactions"
        " FROM cardstream.dash_fraud_by_location ORDER BY state"
    )

    assert rows == [
        {
            "state": "NY",
            "lat": Decimal("42.7"),
            "long": Decimal("-73.8"),
            "transactions": 2,
            "fraud_transactions": 1,
        },
        {
            "state": "TX",
            "lat": Decimal("30.3"),
            "long": Decimal("-97.7"),
            "transactions": 1,
            "fraud_transactions": 0,
        },
    ]


def test_volume_trends_by_hour_day_and_hour_of_day(db: Db) -> None:
    db.insert(
        Txn("h1", dt.datetime(2026, 3, 14, 22, 5), "10.00", 1),
        Txn("h2", dt.datetime(2026, 3, 14, 22, 55), "20.00", 0),
        Txn("h3", dt.datetime(2026, 3, 15, 22, 1), "30.00", 1),
        Txn("h4", dt.datetime(2026, 3, 15, 3, 0), "40.00", 0),
    )

    hourly = db.view(
        "SELECT hour, transactions, fraud_transactions, amount"
        " FROM cardstream.dash_volume_hourly ORDER BY hour"
    )
    daily = db.view(
        "SELECT day, transactions, fraud_transactions, fraud_amount"
        " FROM cardstream.dash_volume_daily ORDER BY day"
    )
    by_hour = db.view(
        "SELECT hour_of_day, transactions, fraud_transactions"
        " FROM cardstream.dash_fraud_by_hour_of_day ORDER BY hour_of_day"
    )

    assert [
        (r["hour"], r["transactions"], r["fraud_transactions"], r["amount"]) for r in hourly
    ] == [
        (dt.datetime(2026, 3, 14, 22), 2, 1, Decimal("30.00")),
        (dt.datetime(2026, 3, 15, 3), 1, 0, Decimal("40.00")),
        (dt.datetime(2026, 3, 15, 22), 1, 1, Decimal("30.00")),
    ]
    assert [(r["day"], r["transactions"], r["fraud_amount"]) for r in daily] == [
        (dt.date(2026, 3, 14), 2, Decimal("10.00")),
        (dt.date(2026, 3, 15), 2, Decimal("30.00")),
    ]
    assert [(r["hour_of_day"], r["transactions"], r["fraud_transactions"]) for r in by_hour] == [
        (3, 1, 0),
        (22, 3, 2),
    ]


def test_freshness_measures_receipt_to_load_over_recent_loads(db: Db) -> None:
    base = dt.datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
    db.insert(
        # Loaded an hour before the latest load: outside the 15-minute window.
        Txn("f0", T0, "1.00", received_at=base - dt.timedelta(hours=1), lag_s=500.0),
        Txn("f1", T0, "1.00", received_at=base, lag_s=1.0),
        Txn("f2", T0, "1.00", received_at=base + dt.timedelta(seconds=10), lag_s=3.0),
        Txn("f3", T0, "1.00", received_at=base + dt.timedelta(seconds=20), lag_s=5.0),
    )

    (fresh,) = db.view("SELECT * FROM cardstream.dash_freshness")
    minutes = db.view(
        "SELECT minute, rows_loaded, receipt_to_load_max_s"
        " FROM cardstream.dash_freshness_by_minute ORDER BY minute"
    )

    assert fresh["last_received_at"] == base + dt.timedelta(seconds=20)
    assert fresh["last_loaded_at"] == base + dt.timedelta(seconds=25)
    assert fresh["recent_rows"] == 3
    assert fresh["receipt_to_load_p50_s"] == pytest.approx(3.0)
    assert fresh["receipt_to_load_max_s"] == pytest.approx(5.0)
    assert [(m["rows_loaded"], m["receipt_to_load_max_s"]) for m in minutes] == [
        (1, pytest.approx(500.0)),
        (3, pytest.approx(5.0)),
    ]


def test_pipeline_counts_objects_and_quarantined_rows(db: Db) -> None:
    db.insert(Txn("p1", T0, "1.00"))
    object_id = db.object_id()
    for line in (3, 7):
        db.admin.execute(
            "INSERT INTO cardstream.quarantined_row (object_id, line_number, reasons)"
            ' VALUES (%s, %s, \'[{"field": "amt", "message": "bad"}]\')',
            (object_id, line),
        )

    (pipeline,) = db.view("SELECT * FROM cardstream.dash_pipeline")

    assert pipeline["objects_loaded"] == 1
    assert pipeline["rows_quarantined"] == 2
    assert pipeline["last_object_loaded_at"] is not None
    assert pipeline["last_quarantined_at"] is not None


def test_fraud_transactions_show_the_card_masked_and_nothing_personal(db: Db) -> None:
    db.insert(
        Txn("x1", T0, "12.00", 1, merchant="fraud_A", category="misc_net"),
        Txn("x2", T0 + dt.timedelta(hours=2), "99.99", 1, state="TX", city="Austin", lat=30.2),
        Txn("x3", T0 + dt.timedelta(hours=3), "5.00", 0),
    )

    rows = db.view(
        "SELECT * FROM cardstream.dash_fraud_transactions"
        " ORDER BY trans_date_trans_time DESC, trans_num"
    )

    assert [(r["trans_num"], r["card_masked"], r["amt"], r["state"]) for r in rows] == [
        ("x2", "****1234", Decimal("99.99"), "TX"),
        ("x1", "****1234", Decimal("12.00"), "NY"),
    ]
    assert set(rows[0]) == {
        "trans_num",
        "trans_date_trans_time",
        "card_masked",
        "merchant",
        "category",
        "amt",
        "state",
        "received_at",
        "loaded_at",
    }


def test_views_are_for_the_dashboard_and_the_analyst_only_and_tables_stay_closed(
    db: Db,
) -> None:
    with (
        psycopg.connect(db.dashboard_dsn) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("SELECT count(*) FROM cardstream.transaction")
    granted = db.admin.execute(
        "SELECT table_name, grantee FROM information_schema.role_table_grants"
        " WHERE table_schema = 'cardstream' AND table_name = ANY(%s)"
        " AND privilege_type = 'SELECT' AND grantee <> %s",
        (list(names.DASHBOARD_VIEWS), names.DB_OWNER_ROLE),
    ).fetchall()
    assert sorted(granted) == sorted(
        (view, role)
        for view in names.DASHBOARD_VIEWS
        for role in (names.DB_ANALYST_ROLE, names.DB_DASHBOARD_ROLE)
    )
