"""Load one object into PostgreSQL in one transaction (docs/architecture.md, hop 6).

Order inside the transaction: claim the ledger row (a reload stops here), COPY the batch
into a session-local staging table, upsert dimensions in foreign-key order, register the
new ``trans_num`` values, insert their transactions, apply later fraud labels to existing
ones, store quarantined lines, record the counts, run the after-insert hooks, commit.

Concurrency: every insert that can meet another loader's rows is ``ON CONFLICT DO NOTHING``
on a unique key and runs in key order, table by table in the same order in every loader, so
two loads wait for each other instead of failing, and cannot deadlock on these keys.
``DO NOTHING`` never raises "ON CONFLICT DO UPDATE command cannot affect row a second
time" (SQLSTATE 21000), and the batch is deduplicated before it reaches the database anyway.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import asyncpg

from db_loader import ledger, quarantine
from db_loader.ledger import LedgerCounts, SourceObject
from db_loader.rows import DIMENSION_COLUMNS, FACT_COLUMNS, PreparedBatch

if TYPE_CHECKING:
    from db_loader.db import DbConnection

logger = logging.getLogger(__name__)

STAGING_TABLE: Final = "loader_staging"
# Deadlocks and serialization failures are resolved by running the object again.
_RETRYABLE: Final = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)
_ATTEMPTS: Final = 3

_CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {STAGING_TABLE} (
    trans_num text,
    trans_date_trans_time timestamp,
    unix_time bigint,
    amt numeric(12, 2),
    category text,
    merchant_id uuid,
    merch_lat double precision,
    merch_long double precision,
    card_token text,
    customer_id uuid,
    is_fraud smallint,
    labelled_at timestamptz,
    ingest_id uuid,
    client_id text,
    received_at timestamptz
) ON COMMIT DELETE ROWS
"""

_SQL_TYPES: Final = {
    "city_id": "uuid", "zip_area_id": "uuid", "address_id": "uuid", "customer_id": "uuid",
    "merchant_id": "uuid", "city_pop": "integer", "lat": "float8", "long": "float8",
    "dob": "date",
}  # fmt: skip


def _dimension_sql(table: str, columns: tuple[str, ...]) -> str:
    # Dimension rows are few (one per distinct key in the object), already deduplicated in
    # Python: sent as arrays. ORDER BY the key gives every loader the same lock order.
    arrays = ", ".join(
        f"${i}::{_SQL_TYPES.get(column, 'text')}[]" for i, column in enumerate(columns, start=1)
    )
    return (
        f"INSERT INTO cardstream.{table} ({', '.join(columns)})"  # noqa: S608 (constants)
        f" SELECT * FROM unnest({arrays}) ORDER BY 1 ON CONFLICT ({columns[0]}) DO NOTHING"
    )


_DIMENSION_SQL: Final = {
    table: _dimension_sql(table, columns) for table, columns in DIMENSION_COLUMNS.items()
}
_FACT_COLUMNS: Final = FACT_COLUMNS

# The registry insert decides which trans_num are new; only those reach the partitioned
# table, whose own primary key (trans_num, month) could not catch a repeat in another month.
_INSERT_FACTS: Final = f"""
WITH fresh AS (
    INSERT INTO cardstream.transaction_key (trans_num, trans_date_trans_time)
    SELECT trans_num, trans_date_trans_time FROM {STAGING_TABLE} ORDER BY trans_num
    ON CONFLICT (trans_num) DO NOTHING
    RETURNING trans_num
)
INSERT INTO cardstream.transaction ({", ".join(_FACT_COLUMNS)}, object_id)
SELECT {", ".join("s." + c for c in _FACT_COLUMNS)}, $1
FROM {STAGING_TABLE} s JOIN fresh USING (trans_num)
RETURNING trans_num
"""  # noqa: S608 (built from the constants above, no input)

# A later label for a transaction already stored updates it; an older one (by the time
# ingest-api received it) never overwrites a newer one, and a missing label changes nothing.
# Each staged row looks its stored twin up by primary key (LATERAL ... LIMIT 1 keeps it an
# index scan in one partition): a plain join could hash-join whole months. Rows this load
# inserted carry the staged label already and drop out by the IS DISTINCT FROM test.
_RELABEL_CANDIDATES: Final = f"""
SELECT s.trans_num, x.trans_date_trans_time, s.is_fraud, s.labelled_at
FROM {STAGING_TABLE} s
CROSS JOIN LATERAL (
    SELECT t.trans_date_trans_time, t.is_fraud, t.labelled_at
    FROM cardstream.transaction_key k
    JOIN cardstream.transaction t
      ON t.trans_num = k.trans_num AND t.trans_date_trans_time = k.trans_date_trans_time
    WHERE k.trans_num = s.trans_num
    LIMIT 1
) x
WHERE s.is_fraud IS NOT NULL
  AND x.is_fraud IS DISTINCT FROM s.is_fraud
  AND (x.labelled_at IS NULL OR x.labelled_at < s.labelled_at)
ORDER BY s.trans_num
"""  # noqa: S608 (built from the constants above, no input)
_RELABEL: Final = """
UPDATE cardstream.transaction SET is_fraud = $3, labelled_at = $4
WHERE trans_num = $1 AND trans_date_trans_time = $2
  AND (labelled_at IS NULL OR labelled_at < $4)
"""


@dataclass
class LoadResult:
    """What loading one object did. ``inserted_trans_nums`` are the rows this load added."""

    source: SourceObject
    object_id: int | None
    already_loaded: bool
    row_count: int = 0
    inserted_trans_nums: list[str] = field(default_factory=list)
    relabelled_trans_nums: list[str] = field(default_factory=list)
    duplicate_count: int = 0
    quarantined_count: int = 0
    committed_at: dt.datetime | None = None

    @property
    def inserted_count(self) -> int:
        return len(self.inserted_trans_nums)


# Runs inside the load's transaction after the rows are in; alert rules hook in here.
AfterInsertHook = Callable[["DbConnection", LoadResult], Awaitable[None]]


class PartitionCache:
    """Months whose partition is known to exist, so each is ensured once per process."""

    def __init__(self) -> None:
        self._known: set[dt.date] = set()

    async def ensure(self, pool: asyncpg.Pool, months: set[dt.date]) -> None:
        """Create missing month partitions, each in its own short transaction.

        Outside the load transaction on purpose: creating a partition locks the parent
        table, and a load transaction holding rows in it must not wait on that lock.
        """
        missing = sorted(months - self._known)
        if not missing:
            return
        async with pool.acquire() as conn:
            for month in missing:
                await conn.execute("SELECT cardstream.ensure_transaction_partition($1)", month)
                self._known.add(month)


async def _load_in_transaction(
    conn: DbConnection,
    source: SourceObject,
    batch: PreparedBatch,
    hooks: Sequence[AfterInsertHook],
) -> LoadResult:
    object_id = await ledger.claim(conn, source)
    if object_id is None:
        return LoadResult(
            source=source, object_id=None, already_loaded=True, row_count=batch.row_count
        )
    result = LoadResult(
        source=source, object_id=object_id, already_loaded=False, row_count=batch.row_count
    )
    if batch.fact_count:
        await conn.execute(_CREATE_STAGING)
        await conn.copy_to_table(
            STAGING_TABLE, source=io.BytesIO(batch.facts_csv), columns=FACT_COLUMNS, format="csv"
        )
        for table, statement in _DIMENSION_SQL.items():
            rows = list(batch.dimensions[table].values())
            await conn.execute(statement, *(list(column) for column in zip(*rows, strict=True)))
        inserted = await conn.fetch(_INSERT_FACTS, object_id)
        result.inserted_trans_nums = [r[0] for r in inserted]
        if len(inserted) < batch.fact_count:
            relabels = await conn.fetch(_RELABEL_CANDIDATES)
            if relabels:
                await conn.executemany(_RELABEL, [tuple(r) for r in relabels])
            result.relabelled_trans_nums = [r[0] for r in relabels]
    result.duplicate_count = batch.duplicates_in_batch + batch.fact_count - result.inserted_count
    result.quarantined_count = len(batch.quarantined)
    await quarantine.store(conn, object_id, batch.quarantined)
    await ledger.record_counts(
        conn,
        object_id,
        LedgerCounts(
            row_count=batch.row_count,
            inserted_count=result.inserted_count,
            duplicate_count=result.duplicate_count,
            relabelled_count=len(result.relabelled_trans_nums),
            quarantined_count=result.quarantined_count,
        ),
    )
    for hook in hooks:
        await hook(conn, result)
    return result


async def load_batch(
    pool: asyncpg.Pool,
    source: SourceObject,
    batch: PreparedBatch,
    *,
    partitions: PartitionCache,
    hooks: Sequence[AfterInsertHook] = (),
) -> LoadResult:
    """Load a prepared batch as one transaction; a reload of a loaded object is a no-op."""
    await partitions.ensure(pool, batch.months)
    attempt = 1
    while True:
        try:
            async with pool.acquire() as conn, conn.transaction():
                result = await _load_in_transaction(conn, source, batch, hooks)
        except _RETRYABLE as exc:
            if attempt >= _ATTEMPTS:
                raise
            logger.warning(
                "retrying object after a transient conflict",
                extra={"object": source.uri, "attempt": attempt, "sqlstate": exc.sqlstate},
            )
            await asyncio.sleep(0.05 * attempt)
            attempt += 1
        else:
            result.committed_at = dt.datetime.now(dt.UTC)
            return result
