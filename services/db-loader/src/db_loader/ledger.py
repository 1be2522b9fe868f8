"""The object ledger: one row per loaded object, written in the object's own transaction.

Claiming the ledger row is the first statement of a load. Its unique key (bucket, key,
etag) is also the lock between loaders: a second loader of the same object waits on the
first one's uncommitted row, then finds it committed and does nothing (or takes over if the
first rolled back). Redelivered, duplicated or reordered notifications are thereby no-ops.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from db_loader.db import DbConnection


@dataclass(frozen=True, slots=True)
class SourceObject:
    """Identity of one object to load; ``bucket`` is ``file`` for local backfill files."""

    bucket: str
    key: str
    etag: str
    size_bytes: int | None = None
    event_time: dt.datetime | None = None
    version_id: str | None = None

    @property
    def uri(self) -> str:
        """``s3://bucket/key`` (or ``file://...``) for logs."""
        return (
            f"{self.bucket}:{self.key}"
            if self.bucket == "file"
            else f"s3://{self.bucket}/{self.key}"
        )


@dataclass(frozen=True, slots=True)
class LedgerCounts:
    """What a load did with the object's rows."""

    row_count: int
    inserted_count: int
    duplicate_count: int
    relabelled_count: int
    quarantined_count: int


async def is_loaded(conn: DbConnection | asyncpg.Pool, source: SourceObject) -> bool:
    """True when the object is already in the ledger (a cheap check before downloading)."""
    value = await conn.fetchval(
        "SELECT 1 FROM cardstream.object_ledger WHERE bucket = $1 AND key = $2 AND etag = $3",
        source.bucket,
        source.key,
        source.etag,
    )
    return value is not None


async def claim(conn: DbConnection, source: SourceObject) -> int | None:
    """Insert the ledger row inside the current transaction; None if already loaded.

    Blocks while another transaction holds an uncommitted claim on the same object.
    """
    object_id: int | None = await conn.fetchval(
        "INSERT INTO cardstream.object_ledger (bucket, key, etag, size_bytes, event_time)"
        " VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (bucket, key, etag) DO NOTHING RETURNING object_id",
        source.bucket,
        source.key,
        source.etag,
        source.size_bytes,
        source.event_time,
    )
    return object_id


async def record_counts(conn: DbConnection, object_id: int, counts: LedgerCounts) -> None:
    """Store the load's counts on the claimed ledger row."""
    await conn.execute(
        "UPDATE cardstream.object_ledger SET row_count = $2, inserted_count = $3,"
        " duplicate_count = $4, relabelled_count = $5, quarantined_count = $6,"
        " loaded_at = now() WHERE object_id = $1",
        object_id,
        counts.row_count,
        counts.inserted_count,
        counts.duplicate_count,
        counts.relabelled_count,
        counts.quarantined_count,
    )
