"""Loading objects into the normalized model against real PostgreSQL.

Covers docs/reliability.md F6 (duplicate and reordered objects), F8 (two loaders, one
object, with barriers over the interleavings), F9 (connection killed mid-transaction),
F11 (the same key twice in a batch), quarantine of bad rows, late fraud labels, and the
lossless reconstruction of every source row by ``cardstream.source_row``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import secrets
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import psycopg
import pytest
from card_number_forms import ascii_digits, written_card_numbers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stream_lines import stream_line

from cardstream.generator import iter_rows
from cardstream_shared import resource_names as names
from cardstream_shared.contract import StreamEnvelope
from cardstream_shared.database import create_pool
from cardstream_shared.pan import PanKeyring
from db_loader.db import APPLICATION_NAME
from db_loader.ledger import SourceObject
from db_loader.loader import KnownDimensions, LoadResult, PartitionCache, load_batch
from db_loader.migrate import bootstrap, with_credentials
from db_loader.object_reader import Limits
from db_loader.rows import prepare, prepare_object

pytestmark = pytest.mark.integration

KEYRING = PanKeyring({"test-1": secrets.token_bytes(32)}, "test-1")
RECEIVED = dt.datetime(2026, 11, 27, 6, 0, tzinfo=dt.UTC)


def source_rows(count: int, seed: int = 7) -> list[dict[str, str]]:
    return [row.as_dict() for row in iter_rows(count, seed)]


def lines_of(rows: list[dict[str, Any]], received_at: dt.datetime = RECEIVED) -> list[bytes]:
    lines = []
    for row in rows:
        lines.append(stream_line(row, KEYRING, received_at=received_at))
    return lines


def numbered(lines: list[bytes]) -> list[tuple[int, bytes]]:
    return list(enumerate(lines, start=1))


def obj(key: str, etag: str = "e1") -> SourceObject:
    return SourceObject(bucket=names.LANDING_BUCKET, key=key, etag=etag)


@pytest.fixture
def admin_dsn(empty_database: str) -> str:
    return empty_database


@pytest.fixture
async def pool(admin_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    password = secrets.token_urlsafe(16)
    bootstrap(admin_dsn, role_passwords={names.DB_LOADER_ROLE: password})
    dsn = with_credentials(admin_dsn, names.DB_LOADER_ROLE, password)
    pool = await create_pool(
        dsn, application_name=APPLICATION_NAME, min_size=1, max_size=4, statement_timeout_s=60
    )
    try:
        yield pool
    finally:
        await pool.close()


async def load(
    pool: asyncpg.Pool, source: SourceObject, lines: list[bytes], **kwargs: Any
) -> LoadResult:
    return await load_batch(
        pool, source, prepare(numbered(lines)), partitions=PartitionCache(), **kwargs
    )


def count(admin_dsn: str, query: str) -> int:
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def expected_source_row(row: dict[str, str]) -> tuple[Any, ...]:
    return (
        dt.datetime.strptime(row["trans_date_trans_time"], "%Y-%m-%d %H:%M:%S"),
        "****" + row["cc_num"][-4:],
        row["merchant"],
        row["category"],
        Decimal(row["amt"]),
        row["first"],
        row["last"],
        row["gender"],
        row["street"],
        row["city"],
        row["state"],
        row["zip"],
        float(row["lat"]),
        float(row["long"]),
        int(row["city_pop"]),
        row["job"],
        dt.date.fromisoformat(row["dob"]),
        row["trans_num"],
        int(row["unix_time"]),
        float(row["merch_lat"]),
        float(row["merch_long"]),
        int(row["is_fraud"]),
    )


async def test_source_row_reconstructs_every_row_as_sent(
    pool: asyncpg.Pool, admin_dsn: str
) -> None:
    rows = source_rows(400)
    result = await load(pool, obj("raw/a.jsonl.gz"), lines_of(rows))
    assert result.inserted_count == 400
    with psycopg.connect(admin_dsn) as conn:
        stored = conn.execute("SELECT * FROM cardstream.source_row ORDER BY trans_num").fetchall()
    assert stored == sorted((expected_source_row(r) for r in rows), key=lambda r: r[17])
    # One dimension row per distinct fact set: a customer with two cards is one customer.
    person = ("first", "last", "gender", "dob", "job", "street", "zip", "lat", "long", "city")
    assert count(admin_dsn, "SELECT count(*) FROM cardstream.customer") == len(
        {tuple(r[f] for f in person) for r in rows}
    )
    assert count(admin_dsn, "SELECT count(*) FROM cardstream.card") == len(
        {r["cc_num"] for r in rows}
    )
    assert count(admin_dsn, "SELECT count(*) FROM cardstream.merchant") == len(
        {r["merchant"] for r in rows}
    )


async def test_replaying_the_same_rows_leaves_each_transaction_once(
    pool: asyncpg.Pool, admin_dsn: str
) -> None:
    lines = lines_of(source_rows(300))
    first = await load(pool, obj("raw/a.jsonl.gz"), lines)
    # F6: the same notification twice and the same rows in another object (a re-written
    # batch), in either order.
    again = await load(pool, obj("raw/a.jsonl.gz"), lines)
    other = await load(pool, obj("raw/b.jsonl.gz"), list(reversed(lines)))
    assert (first.inserted_count, again.already_loaded, other.inserted_count) == (300, True, 0)
    assert other.duplicate_count == 300
    assert count(admin_dsn, "SELECT count(*) FROM cardstream.transaction") == 300
    assert count(admin_dsn, "SELECT count(DISTINCT trans_num) FROM cardstream.transaction") == 300
    assert count(admin_dsn, "SELECT count(*) FROM cardstream.object_ledger") == 2
    assert count(admin_dsn, "SELECT count(*) FROM cardstream.fact_reference_violation") == 0


async def test_dimensions_a_rolled_back_load_sent_are_sent_again(
    pool: asyncpg.Pool, admin_dsn: str
) -> None:
    rows = source_rows(400)
    known = KnownDimensions()

    async def fail(conn: Any, result: LoadResult) -> None:
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError):
        await load(
            pool, obj("raw/a.jsonl.gz"), lines_of(rows[:200]), dimensions=known, hooks=[fail]
        )
    # The rolled-back load's dimension rows are not in the database: they must be sent again.
    await load(pool, obj("raw/a.jsonl.gz"), lines_of(rows[:200]), dimensions=known)
    # Same cardholders, cards and merchants as far as the first half had them: not resent.
    await load(pool, obj("raw/b.jsonl.gz"), lines_of(rows[200:]), dimensions=known)
    with psycopg.connect(admin_dsn) as conn:
        stored = conn.execute("SELECT * FROM cardstream.source_row ORDER BY trans_num").fetchall()
    assert stored == sorted((expected_source_row(r) for r in rows), key=lambda r: r[17])
    assert count(admin_dsn, "SELECT count(*) FROM cardstream.fact_reference_violation") == 0


async def test_same_key_twice_in_a_batch_is_one_row_with_the_latest_label(
    pool: asyncpg.Pool, admin_dsn: str
) -> None:
    rows = source_rows(20)
    relabelled = dict(rows[3], is_fraud="1")
    lines = lines_of([*rows, rows[3]]) + lines_of([relabelled], RECEIVED + dt.timedelta(hours=1))
    result = await load(pool, obj("raw/dup.jsonl.gz"), lines)
    assert result.inserted_count == 20
    assert result.duplicate_count == 2
    assert count(admin_dsn, "SELECT count(*) FROM cardstream.transaction") == 20
    label = count(
        admin_dsn,
        f"SELECT is_fraud FROM cardstream.transaction WHERE trans_num = '{rows[3]['trans_num']}'",
    )
    assert label == 1


async def test_a_later_label_updates_an_older_one_does_not(
    pool: asyncpg.Pool, admin_dsn: str
) -> None:
    rows = source_rows(10)
    await load(pool, obj("raw/first.jsonl.gz"), lines_of(rows))
    target = rows[0]["trans_num"]
    later = lines_of([dict(rows[0], is_fraud="1")], RECEIVED + dt.timedelta(days=1))
    result = await load(pool, obj("raw/label.jsonl.gz"), later)
    assert result.relabelled_trans_nums == [target]
    stale = lines_of([dict(rows[0], is_fraud="0")], RECEIVED + dt.timedelta(hours=1))
    await load(pool, obj("raw/stale.jsonl.gz"), stale)
    query = f"SELECT is_fraud FROM cardstream.transaction WHERE trans_num = '{target}'"
    assert count(admin_dsn, query) == 1
    assert count(admin_dsn, "SELECT count(*) FROM cardstream.transaction") == 10


async def test_bad_rows_are_quarantined_with_reasons_and_good_rows_load(
    pool: asyncpg.Pool, admin_dsn: str
) -> None:
    rows = source_rows(5)
    good = lines_of(rows)
    schema_violation = msgspec.json.decode(good[0])
    schema_violation.update(trans_num="bad-1", amt="-3.00")
    with_pan = msgspec.json.decode(good[1])
    with_pan.update(trans_num="bad-2", cc_num="4111111111111111")
    lines = [
        *good,
        b'{"trans_num": "x", not json',
        msgspec.json.encode(schema_violation),
        msgspec.json.encode(with_pan),
        b"[1, 2]",
    ]
    result = await load(pool, obj("raw/poison.jsonl.gz"), lines)
    assert (result.inserted_count, result.quarantined_count) == (5, 4)
    with psycopg.connect(admin_dsn) as conn:
        quarantined = conn.execute(
            "SELECT line_number, reasons, row_masked, raw_masked FROM cardstream.quarantined_row"
            " ORDER BY line_number"
        ).fetchall()
        dumped = conn.execute("SELECT string_agg(q::text, '') FROM cardstream.quarantined_row q")
        everything = dumped.fetchone()
    assert [q[0] for q in quarantined] == [6, 7, 8, 9]
    assert quarantined[0][1][0]["type"] == "json_invalid"
    assert any(r["field"] == "amt" for r in quarantined[1][1])
    assert any(r["field"] == "cc_num" and r["type"] == "extra_forbidden" for r in quarantined[2][1])
    assert everything is not None
    assert "4111111111111111" not in everything[0]
    assert quarantined[1][2]["trans_num"] == "bad-1"


async def test_an_over_long_line_is_quarantined_and_the_rest_of_its_object_loads(
    pool: asyncpg.Pool, admin_dsn: str
) -> None:
    """A hand-made object with one line past the line bound: the line is quarantined with
    its reason (its beginning, masked), the object's other lines load."""
    good = lines_of(source_rows(4))
    long_line = b'{"note": "card 4111111111111111 ' + b"x" * 20_000 + b'"}'
    body = gzip.compress(b"\n".join([good[0], good[1], long_line, good[2], good[3]]) + b"\n")
    limits = Limits(max_object_bytes=1 << 20, max_decompressed_bytes=1 << 20, max_line_bytes=8192)
    batch = prepare_object("raw/long.jsonl.gz", body, limits)
    result = await load_batch(pool, obj("raw/long.jsonl.gz"), batch, partitions=PartitionCache())
    assert (result.inserted_count, result.quarantined_count) == (4, 1)
    with psycopg.connect(admin_dsn) as conn:
        [(line_number, reasons, raw_masked)] = conn.execute(
            "SELECT line_number, reasons, raw_masked FROM cardstream.quarantined_row"
        ).fetchall()
    assert line_number == 3
    assert reasons == [
        {"field": None, "message": "line exceeds 8192 bytes", "type": "line_too_long"}
    ]
    assert raw_masked.startswith('{"note": "card ')
    assert "4111111111111111" not in raw_masked
    assert count(admin_dsn, "SELECT count(*) FROM cardstream.transaction") == 4


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cards=st.lists(written_card_numbers, min_size=12, max_size=12))
async def test_a_card_number_in_any_field_of_a_landed_line_is_quarantined_never_stored(
    pool: asyncpg.Pool, admin_dsn: str, cards: list[tuple[str, str]]
) -> None:
    """Another producer's lines (never ingest-api's): a card number in any text field, or
    as a field's name, is quarantined, not loaded, and stored nowhere in clear."""
    base = msgspec.json.decode(lines_of(source_rows(1))[0])
    fields = [*StreamEnvelope.TEXT_FIELDS, "note"]
    lines = []
    for (_, text), field in zip(cards, fields, strict=False):
        lines.append(msgspec.json.encode({**base, "trans_num": f"pan-{len(lines)}", field: text}))
    _, named = cards[-1]
    lines.append(msgspec.json.encode({**base, "trans_num": "pan-key", named: "1"}))
    result = await load(pool, obj(f"raw/pans-{uuid.uuid4().hex}.jsonl.gz"), lines)
    assert (result.inserted_count, result.quarantined_count) == (0, len(lines))
    with psycopg.connect(admin_dsn) as conn:
        dumped = conn.execute("SELECT string_agg(q::text, '') FROM cardstream.quarantined_row q")
        stored = dumped.fetchone()
    assert stored is not None
    digits = ascii_digits(stored[0])
    for pan, _ in cards:
        assert pan not in digits


async def _backend_waiting_on_lock(pool: asyncpg.Pool, pid_holder: list[int]) -> bool:
    rows = await pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND application_name = 'cardstream-db-loader'"
    )
    return any(r["pid"] not in pid_holder for r in rows)


async def _wait_until_blocked(pool: asyncpg.Pool, holder_pids: list[int]) -> None:
    # Polls the server's view of lock waits: no event can tell us another backend blocked.
    while not await _backend_waiting_on_lock(pool, holder_pids):  # noqa: ASYNC110
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("first_outcome", ["commit", "rollback"])
async def test_two_loaders_one_object(
    pool: asyncpg.Pool, admin_dsn: str, first_outcome: str
) -> None:
    """F8: the second loader waits on the first one's ledger claim, then no-ops (or, when the
    first rolls back, loads the object itself); neither sees a unique violation."""
    lines = lines_of(source_rows(200))
    inside = asyncio.Event()
    release = asyncio.Event()
    holder: list[int] = []

    async def hold(conn: asyncpg.Connection, result: LoadResult) -> None:
        holder.append(await conn.fetchval("SELECT pg_backend_pid()"))
        inside.set()
        await release.wait()
        if first_outcome == "rollback":
            raise RuntimeError("first loader fails after inserting")

    first = asyncio.create_task(load(pool, obj("raw/same.jsonl.gz"), lines, hooks=[hold]))
    await inside.wait()
    second = asyncio.create_task(load(pool, obj("raw/same.jsonl.gz"), lines))
    await asyncio.wait_for(_wait_until_blocked(pool, holder), timeout=30)
    release.set()
    if first_outcome == "commit":
        assert (await first).inserted_count == 200
        assert (await second).already_loaded
    else:
        with pytest.raises(RuntimeError):
            await first
        assert (await second).inserted_count == 200
    assert count(admin_dsn, "SELECT count(*) FROM cardstream.transaction") == 200
    assert count(admin_dsn, "SELECT count(*) FROM cardstream.object_ledger") == 1


async def test_two_loaders_overlapping_objects(pool: asyncpg.Pool, admin_dsn: str) -> None:
    """Two different objects sharing rows, loaded at the same time: every row once."""
    rows = source_rows(300)
    inside = asyncio.Event()
    release = asyncio.Event()
    holder: list[int] = []

    async def hold(conn: asyncpg.Connection, result: LoadResult) -> None:
        holder.append(await conn.fetchval("SELECT pg_backend_pid()"))
        inside.set()
        await release.wait()

    first = asyncio.create_task(
        load(pool, obj("raw/x.jsonl.gz"), lines_of(rows[:200]), hooks=[hold])
    )
    await inside.wait()
    second = asyncio.create_task(load(pool, obj("raw/y.jsonl.gz"), lines_of(rows[100:])))
    await asyncio.wait_for(_wait_until_blocked(pool, holder), timeout=30)
    release.set()
    a, b = await first, await second
    assert (a.inserted_count, b.inserted_count, b.duplicate_count) == (200, 100, 100)
    assert count(admin_dsn, "SELECT count(*) FROM cardstream.transaction") == 300


async def test_connection_killed_mid_transaction_rolls_back_and_reload_is_clean(
    pool: asyncpg.Pool, admin_dsn: str
) -> None:
    """F9: pg_terminate_backend on the loader's backend inside the transaction."""
    lines = lines_of(source_rows(150))
    inside = asyncio.Event()
    release = asyncio.Event()
    pids: list[int] = []

    async def hold(conn: asyncpg.Connection, result: LoadResult) -> None:
        pids.append(await conn.fetchval("SELECT pg_backend_pid()"))
        inside.set()
        await release.wait()
        await conn.fetchval("SELECT 1")

    task = asyncio.create_task(load(pool, obj("raw/k.jsonl.gz"), lines, hooks=[hold]))
    await inside.wait()
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pids[0],))
    release.set()
    with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError)):
        await task
    assert count(admin_dsn, "SELECT count(*) FROM cardstream.object_ledger") == 0
    assert count(admin_dsn, "SELECT count(*) FROM cardstream.transaction") == 0
    again = await load(pool, obj("raw/k.jsonl.gz"), lines)
    assert again.inserted_count == 150
    assert count(admin_dsn, "SELECT count(*) FROM cardstream.transaction") == 150
