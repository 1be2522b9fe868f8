"""The model's migrations against real PostgreSQL: idempotent bootstrap, roles, schema drift."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

from cardstream_shared import resource_names as names
from db_loader.migrate import alembic_config, bootstrap, with_credentials
from db_loader.models import SCHEMA

pytestmark = pytest.mark.integration


@pytest.fixture
def passwords() -> dict[str, str]:
    return {role: secrets.token_urlsafe(16) for role in names.DB_ROLE_SECRETS}


def _relations(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = 'cardstream'"
            " AND c.relkind IN ('r', 'p', 'v')"
        ).fetchall()
    return dict(rows)


def test_bootstrap_twice_creates_the_model_once(
    empty_database: str, passwords: dict[str, str]
) -> None:
    bootstrap(empty_database, role_passwords=passwords)
    first = _relations(empty_database)
    bootstrap(empty_database, role_passwords=passwords)
    assert _relations(empty_database) == first
    assert first["transaction"] == "p"
    assert first["transaction_detail"] == "v"
    assert first["source_row"] == "v"
    for table in ("object_ledger", "quarantined_row", "transaction_key", "card", "customer"):
        assert first[table] == "r"
    with psycopg.connect(empty_database) as conn:
        owner = conn.execute(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'cardstream'"
            " AND tablename = 'customer'"
        ).fetchone()
        versions = conn.execute("SELECT version_num FROM cardstream.alembic_version").fetchall()
    assert owner == (names.DB_OWNER_ROLE,)
    script = ScriptDirectory.from_config(alembic_config())
    # One history across the model's and the monitoring member's migration folders.
    assert script.get_heads() == [v for (v,) in versions]
    assert len(versions) == 1
    assert {"0001", "dashboard_0001", "alerts_0001"} <= {
        r.revision for r in script.walk_revisions()
    }


def test_migrated_schema_matches_the_sqlmodel_tables(
    empty_database: str, passwords: dict[str, str]
) -> None:
    bootstrap(empty_database, role_passwords=passwords)
    engine = create_engine(
        empty_database.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=NullPool
    )

    ours = {table.name for table in SQLModel.metadata.tables.values()}

    def include(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
        # Only the model's own tables: monthly partitions are created by the loader, and
        # other components (alerts, dashboard) add tables of their own in later migrations.
        table = obj if kind == "table" else getattr(obj, "table", None)
        return table is None or table.name in ours

    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "include_schemas": True,
                    "include_name": lambda name, kind, parent: kind != "schema" or name == SCHEMA,
                    "include_object": include,
                },
            )
            diff = compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()
    assert diff == []


# Cardholder details: only the api role reads them (its tenant's own transactions).
CARDHOLDER_COLUMNS = {"first", "last", "street", "dob"}


def _columns(conn: psycopg.Connection[Any], view: str) -> set[str]:
    cursor = conn.execute(f"SELECT * FROM cardstream.{view} LIMIT 0")
    return {column.name for column in cursor.description or ()}


def test_roles_see_only_what_they_need(empty_database: str, passwords: dict[str, str]) -> None:
    bootstrap(empty_database, role_passwords=passwords)

    def connect(role: str) -> psycopg.Connection[Any]:
        return psycopg.connect(
            with_credentials(empty_database, role, passwords[role]), autocommit=True
        )

    def refused(conn: psycopg.Connection[Any], *relations: str) -> None:
        for relation in relations:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT count(*) FROM cardstream.{relation}")

    with connect(names.DB_LOADER_ROLE) as conn:
        partition = conn.execute(
            "SELECT cardstream.ensure_transaction_partition('2019-01-17')"
        ).fetchone()
        assert partition == ("transaction_y2019m01",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE cardstream.intruder (x int)")
        refused(conn, "transaction_detail", "tenant_transaction_detail", "source_row")
    with connect(names.DB_API_ROLE) as conn:
        # Row-level security: a session naming no tenant reads no row.
        assert conn.execute(
            "SELECT count(*) FROM cardstream.tenant_transaction_detail"
        ).fetchone() == (0,)
        assert _columns(conn, "tenant_transaction_detail") >= CARDHOLDER_COLUMNS
        refused(
            conn,
            "transaction_detail",
            "transaction_masked",
            "source_row",
            "customer",
            "transaction",
            "alert_detail",
            "dash_totals",
        )
        # The tenant reader owns the api's views; nobody but the owner may act as it.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SET ROLE {names.DB_TENANT_READER_ROLE}")
    with connect(names.DB_ANALYST_ROLE) as conn:
        assert conn.execute("SELECT count(*) FROM cardstream.transaction_masked").fetchone() == (0,)
        assert not CARDHOLDER_COLUMNS & _columns(conn, "transaction_masked")
        assert conn.execute("SELECT count(*) FROM cardstream.dash_totals").fetchone() == (1,)
        refused(
            conn,
            "transaction_detail",
            "source_row",
            "tenant_transaction_detail",
            "tenant_alert_detail",
            "alert_detail",
            "customer",
        )
        # No role needs temporary tables; PostgreSQL grants them to PUBLIC unless revoked.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TEMPORARY TABLE scratch (x int)")
    with connect(names.DB_DASHBOARD_ROLE) as conn:
        dashboard_views = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'cardstream'"
            " AND has_any_column_privilege(c.oid, 'SELECT')"
        ).fetchall()
        assert dashboard_views
        assert all(name.startswith("dash_") for (name,) in dashboard_views)
        assert conn.execute("SELECT count(*) FROM cardstream.dash_alerts_open").fetchone() == (0,)
        refused(
            conn,
            "transaction_masked",
            "transaction_detail",
            "source_row",
            "tenant_transaction_detail",
            "alert",
            "customer",
        )
    # The tenant reader cannot log in at all.
    with psycopg.connect(empty_database) as admin:
        login = admin.execute(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (names.DB_TENANT_READER_ROLE,)
        ).fetchone()
    assert login == (False,)
