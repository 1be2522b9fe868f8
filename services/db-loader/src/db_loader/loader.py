"""Load one object into PostgreSQL in one transaction (docs/architecture.md, hop 6).

Order inside the transaction: claim the ledger row (a reload stops here), upsert dimensions
in foreign-key order, register the ``trans_num`` values (the registry answers which are
new), COPY the new transactions straight into the partitioned table, apply later fraud
labels to existing ones, store quarantined lines, record the counts, run the after-insert
hooks, commit.

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
from typing import TYPE_CHECKING, Any, Final

import asyncpg

from db_loader import ledger, quarantine
from db_loader.ledger import LedgerCounts, SourceObject
from db_loader.rows import DIMENSION_COLUMNS, FACT_COLUMNS, PreparedBatch, split_label

if TYPE_CHECKING:
    from db_loader.db import DbConnection

logger = logging.getLogger(__name__)

# Deadlocks and serialization failures are resolved by running the object again.
_RETRYABLE: Final = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)
_ATTEMPTS: Final = 3

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
# The registry decides which trans_num are new; only those reach the partitioned table, whose
# own primary key (trans_num, month) could not catch a repeat in another month. Key order
# gives concurrent loaders the same lock order. Returns how many were new and, only when some
# were not, which ones (the common all-new case sends no 10,000-row answer back). Keys and
# times travel as comma-joined text (neither can hold a comma): asyncpg encodes a text[]
# element by element (docs/benchmarks.md has the cost), a join costs almost nothing.
_REGISTER: Final = """
WITH fresh AS (
    INSERT INTO cardstream.transaction_key (trans_num, trans_date_trans_time)
    SELECT trans_num, time::timestamp
    FROM unnest(string_to_array($1, ','), string_to_array($2, ',')) AS s(trans_num, time)
    ORDER BY trans_num
    ON CONFLICT (trans_num) DO NOTHING
    RETURNING trans_num
)
SELECT count(*)::int, CASE WHEN count(*) < $3 THEN array_agg(trans_num) END FROM fresh
"""
_COPY_COLUMNS: Final = ("object_id", *FACT_COLUMNS)

# A later label for a transaction already stored updates it; an older one (by the time
# ingest-api received it) never overwrites a newer one, and a missing label changes nothing.
# Each candidate looks its stored twin up by primary key (LATERAL ... LIMIT 1 keeps it an
# index scan in one partition): a plain join could hash-join whole months.
_RELABEL_CANDIDATES: Final = """
SELECT s.trans_num, x.trans_date_trans_time, s.is_fraud, s.labelled_at
FROM unnest($1::text[], $2::smallint[], $3::text[]::timestamptz[])
    AS s(trans_num, is_fraud, labelled_at)
CROSS JOIN LATERAL (
    SELECT t.trans_date_trans_time, t.is_fraud, t.labelled_at
    FROM cardstream.transaction_key k
    JOIN cardstream.transaction t
      ON t.trans_num = k.trans_num AND t.trans_date_trans_time = k.trans_date_trans_time
    WHERE k.trans_num = s.trans_num
    LIMIT 1
) x
WHERE x.is_fraud IS DISTINCT FROM s.is_fraud
  AND (x.labelled_at IS NULL OR x.labelled_at < s.labelled_at)
ORDER BY s.trans_num
"""
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


class KnownDimensions:
    """Dimension keys this process has committed, so later objects need not send them again.

    Dimension rows are only ever inserted (no role may delete one), so a committed key stays.
    Keys are added only after their transaction committed. The set is bounded: past
    ``max_keys`` it starts over, which costs re-sending rows that already exist, nothing else.
    """

    def __init__(self, max_keys: int = 200_000) -> None:
        self._max_keys = max_keys
        self._known: dict[str, set[Any]] = {table: set() for table in DIMENSION_COLUMNS}

    def unknown_rows(self, batch: PreparedBatch) -> dict[str, list[tuple[Any, ...]]]:
        """Each table's rows of ``batch`` whose key is not known to be committed."""
        return {
            table: [row for key, row in rows.items() if key not in self._known[table]]
            for table, rows in batch.dimensions.items()
        }

    def committed(self, batch: PreparedBatch) -> None:
        """Remember the keys of a batch whose transaction committed."""
        if sum(map(len, self._known.values())) > self._max_keys:
            for keys in self._known.values():
                keys.clear()
        for table, rows in batch.dimensions.items():
            self._known[table].update(rows)


def _copy_source(object_id: int, records: list[str]) -> io.BytesIO:
    # Each record is one CSV record without its line end; the object id goes in front.
    prefix = f"{object_id},"
    return io.BytesIO((prefix + f"\n{prefix}".join(records) + "\n").encode())


async def _relabel(
    conn: DbConnection, batch: PreparedBatch, fresh: set[str]
) -> list[asyncpg.Record]:
    """Apply the labels of already stored transactions; returns the updated ones."""
    keys: list[str] = []
    labels: list[int] = []
    times: list[str] = []
    for trans_num, record in zip(batch.trans_nums, batch.fact_records, strict=True):
        if trans_num in fresh:
            continue
        _, is_fraud, labelled_at, _ = split_label(record)
        if is_fraud is not None and labelled_at is not None:
            keys.append(trans_num)
            labels.append(is_fraud)
            times.append(labelled_at)
    if not keys:
        return []
    relabels = await conn.fetch(_RELABEL_CANDIDATES, keys, labels, times)
    if relabels:
        await conn.executemany(_RELABEL, [tuple(r) for r in relabels])
    return relabels


async def _load_in_transaction(
    conn: DbConnection,
    source: SourceObject,
    batch: PreparedBatch,
    hooks: Sequence[AfterInsertHook],
    dimensions: KnownDimensions | None,
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
        unknown = (
            dimensions.unknown_rows(batch)
            if dimensions is not None
            else {table: list(rows.values()) for table, rows in batch.dimensions.items()}
        )
        for table, statement in _DIMENSION_SQL.items():
            if unknown[table]:
                columns = zip(*unknown[table], strict=True)
                await conn.execute(statement, *(list(column) for column in columns))
        registered = await conn.fetch(
            _REGISTER, ",".join(batch.trans_nums), ",".join(batch.times), batch.fact_count
        )
        new_count, new_keys = registered[0]
        fresh: set[str] | None = None
        if new_count == batch.fact_count:
            result.inserted_trans_nums = list(batch.trans_nums)
            records = batch.fact_records
        else:
            fresh = set(new_keys or ())
            result.inserted_trans_nums = [t for t in batch.trans_nums if t in fresh]
            records = [
                record
                for trans_num, record in zip(batch.trans_nums, batch.fact_records, strict=True)
                if trans_num in fresh
            ]
        if records:
            # COPY routes each row to its month's partition: no staging table, no join.
            await conn.copy_to_table(
                "transaction",
                schema_name="cardstream",
                source=_copy_source(object_id, records),
                columns=_COPY_COLUMNS,
                format="csv",
            )
        if fresh is not None:
            result.relabelled_trans_nums = [r[0] for r in await _relabel(conn, batch, fresh)]
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
    dimensions: KnownDimensions | None = None,
) -> LoadResult:
    """Load a prepared batch as one transaction; a reload of a loaded object is a no-op.

    With ``dimensions``, dimension rows this process already committed are not sent again.
    """
    await partitions.ensure(pool, batch.months)
    attempt = 1
    while True:
        try:
            async with pool.acquire() as conn, conn.transaction():
                result = await _load_in_transaction(conn, source, batch, hooks, dimensions)
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
            if dimensions is not None:
                dimensions.committed(batch)
            return result
