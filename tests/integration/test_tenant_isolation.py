"""Tenants isolated by PostgreSQL itself, and the alert audit trail, as the api role.

Two merchants' card-testing bursts are loaded the real way. Queries then run as the api
role exactly as a bug in the API would run them, without any tenant filter: row-level
security alone decides what they return (the tenant the transaction names, every tenant
for an operator, nothing when the session names none). The audit trail is written by
every change of an alert and refuses to be rewritten, by the api role and by the owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
import psycopg
import pytest
from card_testing_bursts import load_burst

from cardstream_shared import resource_names as names

pytestmark = pytest.mark.integration

# Everything the api role may read; each must be filtered by tenant.
API_READABLE = {"tenant_transaction_detail", "tenant_alert_detail", "alert", "alert_status_change"}


@pytest.fixture(scope="module")
def bursts(module_database: str) -> dict[str, list[str]]:
    """trans_num of each merchant's alerted transactions."""
    return {
        client: asyncio.run(load_burst(module_database, card, client))
        for card, client in ((31, "merchant-a"), (32, "merchant-b"))
    }


@asynccontextmanager
async def api_session(
    dsn: str, *, tenant: str | None = None, all_tenants: bool = False
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction as the api role, with the settings the API makes (or none)."""
    conn = await asyncpg.connect(dsn, server_settings={"role": names.DB_API_ROLE})
    try:
        async with conn.transaction():
            if tenant is not None:
                await conn.execute(
                    "SELECT set_config('cardstream.tenant', $1, true),"
                    " set_config('cardstream.all_tenants', $2, true)",
                    tenant,
                    "on" if all_tenants else "off",
                )
            yield conn
    finally:
        await conn.close()


async def _tenants(conn: asyncpg.Connection, relation: str) -> set[str]:
    """The tenants whose rows a plain ``SELECT`` of ``relation`` returns."""
    rows = await conn.fetch(f"SELECT DISTINCT client_id FROM cardstream.{relation}")
    return {r["client_id"] for r in rows}


async def _alert_ids(dsn: str, trans_nums: list[str]) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT alert_id FROM cardstream.alert WHERE trans_num = ANY($1::text[])"
            " ORDER BY alert_id",
            trans_nums,
        )
    finally:
        await conn.close()
    return [r["alert_id"] for r in rows]


async def _count(conn: asyncpg.Connection, relation: str) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM cardstream.{relation}"))


async def _review_everything(dsn: str) -> None:
    """One status change on every alert, so each tenant has a trail to read."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE cardstream.alert SET status = 'reviewed', status_changed_by = 'analyst-7',"
            " status_changed_by_name = 'Ann Analyst' WHERE status = 'open'"
        )
    finally:
        await conn.close()


async def test_the_api_role_reads_only_relations_filtered_by_tenant(module_database: str) -> None:
    conn = await asyncpg.connect(module_database)
    try:
        readable = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'cardstream' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            " AND has_any_column_privilege($1, c.oid, 'SELECT')",
            names.DB_API_ROLE,
        )
    finally:
        await conn.close()
    assert {r["relname"] for r in readable} == API_READABLE


async def test_a_query_that_forgets_the_filter_reads_only_the_sessions_tenant(
    module_database: str, bursts: dict[str, list[str]]
) -> None:
    await _review_everything(module_database)
    mine = set(bursts["merchant-a"])
    async with api_session(module_database, tenant="merchant-a") as conn:
        for relation in sorted(API_READABLE):
            assert await _tenants(conn, relation) == {"merchant-a"}, relation
        for view in ("tenant_transaction_detail", "tenant_alert_detail"):
            rows = await conn.fetch(f"SELECT trans_num FROM cardstream.{view}")
            assert {r["trans_num"] for r in rows} == mine, view
    async with api_session(module_database, tenant="merchant-a", all_tenants=True) as conn:
        for relation in sorted(API_READABLE):
            assert await _tenants(conn, relation) >= {"merchant-a", "merchant-b"}, relation


async def test_no_tenant_setting_reads_no_rows(
    module_database: str, bursts: dict[str, list[str]]
) -> None:
    await _review_everything(module_database)
    async with api_session(module_database) as conn:
        for relation in sorted(API_READABLE):
            assert await _count(conn, relation) == 0, relation
    # The settings are the transaction's own: the next one on the connection starts bare.
    conn = await asyncpg.connect(module_database, server_settings={"role": names.DB_API_ROLE})
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('cardstream.all_tenants', 'on', true)")
            assert await _count(conn, "tenant_transaction_detail") >= 8
        async with conn.transaction():
            assert await _count(conn, "tenant_transaction_detail") == 0
    finally:
        await conn.close()


async def test_a_tenant_cannot_change_another_tenants_alert(
    module_database: str, bursts: dict[str, list[str]]
) -> None:
    theirs = await _alert_ids(module_database, bursts["merchant-b"])
    async with api_session(module_database, tenant="merchant-a") as conn:
        changed = await conn.execute(
            "UPDATE cardstream.alert SET status = 'dismissed', status_changed_by = 'x'"
            " WHERE alert_id = ANY($1::bigint[])",
            theirs,
        )
    assert changed == "UPDATE 0"


async def test_evidence_keeps_only_the_readers_own_transactions_and_figures(
    module_database: str, bursts: dict[str, list[str]]
) -> None:
    mine, theirs = bursts["merchant-a"], bursts["merchant-b"]
    # Evidence as the amount spike and impossible travel rules write it, crafted by the
    # owner on merchant-a's transactions, naming one transaction of each merchant.
    evidence = {
        "amount": 812.0,
        "card_median": 12.5,
        "history_count": 7,
        "previous_trans_num": theirs[0],
        "trigger_trans_num": mine[1],
    }
    conn = await asyncpg.connect(module_database)
    try:
        alert_id = await conn.fetchval(
            "INSERT INTO cardstream.alert (trans_num, card_token, client_id, rule, severity,"
            " score, evidence) SELECT trans_num, card_token, client_id, 'amount_spike',"
            " 'medium', 1.5, $2::jsonb FROM cardstream.alert WHERE trans_num = $1 LIMIT 1"
            " RETURNING alert_id",
            mine[0],
            msgspec.json.encode(evidence).decode(),
        )
    finally:
        await conn.close()
    query = "SELECT evidence FROM cardstream.tenant_alert_detail WHERE alert_id = $1"
    async with api_session(module_database, tenant="merchant-a") as api:
        as_tenant = msgspec.json.decode(await api.fetchval(query, alert_id))
    async with api_session(module_database, tenant="merchant-a", all_tenants=True) as api:
        as_operator = msgspec.json.decode(await api.fetchval(query, alert_id))
    assert as_tenant == {"amount": 812.0, "history_count": 7, "trigger_trans_num": mine[1]}
    assert as_operator == evidence


def _trail(dsn: str, alert_id: int) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT from_status, to_status, changed_by, changed_by_name, note, client_id"
            " FROM cardstream.alert_status_change WHERE alert_id = %s ORDER BY change_id",
            (alert_id,),
        ).fetchall()


async def test_every_change_of_an_alert_is_appended_to_its_trail(
    module_database: str, bursts: dict[str, list[str]]
) -> None:
    await _review_everything(module_database)
    [alert_id] = await _alert_ids(module_database, bursts["merchant-a"][2:3])
    async with api_session(module_database, tenant="merchant-a") as api:
        before = len(_trail(module_database, alert_id))
        # A status change, a note alone, and who alone: each is a change of the case.
        await api.execute(
            "UPDATE cardstream.alert SET status = 'escalated', status_changed_by = 'lead-2',"
            " status_changed_by_name = 'Lee Lead', status_note = NULL WHERE alert_id = $1",
            alert_id,
        )
        await api.execute(
            "UPDATE cardstream.alert SET status_note = 'card blocked' WHERE alert_id = $1",
            alert_id,
        )
        await api.execute(
            "UPDATE cardstream.alert SET status_changed_by = 'analyst-9',"
            " status_changed_by_name = 'Ada Analyst' WHERE alert_id = $1",
            alert_id,
        )
        # Naming nobody is refused.
        with pytest.raises(asyncpg.NotNullViolationError):
            async with api.transaction():
                await api.execute(
                    "UPDATE cardstream.alert SET status = 'dismissed', status_changed_by = NULL"
                    " WHERE alert_id = $1",
                    alert_id,
                )
    trail = _trail(module_database, alert_id)[before:]
    assert trail == [
        ("reviewed", "escalated", "lead-2", "Lee Lead", None, "merchant-a"),
        ("escalated", "escalated", "lead-2", "Lee Lead", "card blocked", "merchant-a"),
        ("escalated", "escalated", "analyst-9", "Ada Analyst", "card blocked", "merchant-a"),
    ]


async def test_the_trail_is_append_only_for_the_api_role_and_the_owner(
    module_database: str, bursts: dict[str, list[str]]
) -> None:
    await _review_everything(module_database)
    async with api_session(module_database, tenant="merchant-a") as api:
        alert_id = await api.fetchval("SELECT alert_id FROM cardstream.alert_status_change")
        for statement in (
            "UPDATE cardstream.alert_status_change SET changed_by = 'someone else'",
            "DELETE FROM cardstream.alert_status_change",
            # Nor can it write a change that did not happen: only the trigger appends.
            "INSERT INTO cardstream.alert_status_change (alert_id, client_id, from_status,"
            " to_status, changed_by, changed_at) VALUES (1, 'merchant-a', 'open', 'dismissed',"
            " 'forger', now())",
            # Nor alter an alert beyond its case columns.
            "UPDATE cardstream.alert SET rule = 'velocity'",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with api.transaction():
                    await api.execute(statement)
    trail = _trail(module_database, alert_id)
    owner = await asyncpg.connect(module_database, server_settings={"role": names.DB_OWNER_ROLE})
    try:
        for statement in (
            "UPDATE cardstream.alert_status_change SET changed_by = 'someone else'",
            "DELETE FROM cardstream.alert_status_change",
            "TRUNCATE cardstream.alert_status_change",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await owner.execute(statement)
    finally:
        await owner.close()
    assert _trail(module_database, alert_id) == trail
