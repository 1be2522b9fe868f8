"""Benchmark: the db-loader against a baseline shaped like the original design, same run.

The same landed objects (gzip NDJSON of stream envelopes, 10,000 rows each, from the
project's generator) are loaded twice into one PostgreSQL server:

* ``cardstream``: ``db_loader`` as the service runs it: gunzip, parse and validate every
  line in ``--prepare-processes`` worker processes, dedupe, dimension upserts, ``trans_num``
  registry, COPY of the new rows into the monthly partitions, ledger; ``--concurrency``
  objects at a time.
* ``baseline``: the original design's loader (a Lambda with a PostgreSQL driver): every
  column TEXT in one table, one ``INSERT`` per row (``ON CONFLICT DO NOTHING`` with no
  key to conflict on, no prepared statement), one transaction per object, objects one
  after another.

Besides wall-clock rows/s, it prints the CPU seconds the load cost (this process, its
worker processes and the PostgreSQL backends): on a shared machine the wall clock depends
on the neighbours, CPU per row much less. It also prints what the database keeps and
writes for each row: the write-ahead log each load wrote per row (what a primary writes
and ships to its standby) and the size of the cardstream schema per row loaded (tables,
indexes, registry and ledger), the capacity model's database figures (bench/figures.toml).

Usage::

    uv run python bench/loader_bench.py [--objects 6] [--rows-per-object 10000]

PostgreSQL is embedded (a fresh server in a temporary folder, default settings, so
``fsync`` is on) unless ``DATABASE_URL`` names a superuser URL. Prints rows/s for each and
the ratio; it never fails on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import gzip
import json
import multiprocessing
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import psycopg

from cardstream.generator import iter_rows
from cardstream.local.embedded_pg import EmbeddedPostgres
from cardstream_shared import resource_names as names
from cardstream_shared.contract import KAGGLE_FIELDS, StreamEnvelope, TransactionIn
from cardstream_shared.database import create_pool
from cardstream_shared.pan import PanKeyring
from db_loader.db import APPLICATION_NAME
from db_loader.ledger import SourceObject
from db_loader.loader import KnownDimensions, PartitionCache, load_batch
from db_loader.migrate import bootstrap, with_credentials, with_database
from db_loader.object_reader import Limits
from db_loader.rows import prepare_object

LIMITS = Limits(256 << 20, 1 << 30, 1 << 20)
BASELINE_COLUMNS = (*KAGGLE_FIELDS, "card_token", "client_id", "received_at")


def make_objects(count: int, rows_per_object: int, seed: int) -> list[tuple[str, bytes]]:
    keyring = PanKeyring({"bench": secrets.token_bytes(32)}, "bench")
    received = dt.datetime.now(dt.UTC)
    rows = iter_rows(count * rows_per_object, seed)
    objects = []
    for number in range(count):
        lines = []
        for _ in range(rows_per_object):
            txn = TransactionIn.model_validate(next(rows).as_dict())
            envelope = StreamEnvelope.from_transaction(
                txn, keyring.tokenize(txn.cc_num), client_id="bench", received_at=received
            )
            lines.append(envelope.to_json_bytes())
        key = f"raw/dt=2026-11-27/hour=06/shardId-000000000000-{number:08d}.jsonl.gz"
        objects.append((key, gzip.compress(b"\n".join(lines) + b"\n", compresslevel=6)))
    return objects


async def run_cardstream(
    dsn: str,
    objects: list[tuple[str, bytes]],
    concurrency: int,
    executor: ProcessPoolExecutor,
    pg_cpu: Callable[[], float],
) -> tuple[float, float]:
    pool = await create_pool(
        dsn,
        application_name=APPLICATION_NAME,
        min_size=concurrency,
        max_size=concurrency + 1,
        statement_timeout_s=600,
    )
    partitions = PartitionCache()
    dimensions = KnownDimensions()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in objects:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            key, body = queue.get_nowait()
            source = SourceObject(bucket=names.LANDING_BUCKET, key=key, etag=key)
            # As in the service: decode, parse and validate in a worker process.
            batch = await loop.run_in_executor(executor, prepare_object, key, body, LIMITS)
            result = await load_batch(
                pool, source, batch, partitions=partitions, dimensions=dimensions
            )
            assert result.inserted_count == batch.row_count, result

    try:
        # Backends are measured while alive: an exited process's CPU time is not counted.
        cpu = pg_cpu()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, pg_cpu() - cpu
    finally:
        await pool.close()


def run_baseline(
    dsn: str, objects: list[tuple[str, bytes]], pg_cpu: Callable[[], float]
) -> tuple[float, float]:
    columns = ", ".join(f'"{c}"' for c in BASELINE_COLUMNS)
    insert = (
        f"INSERT INTO baseline.transactions ({columns})"
        f" VALUES ({', '.join(['%s'] * len(BASELINE_COLUMNS))}) ON CONFLICT DO NOTHING"
    )
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS baseline")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS baseline.transactions ("
            + ", ".join(f'"{c}" text' for c in BASELINE_COLUMNS)
            + ")"
        )
        conn.commit()
        cpu = pg_cpu()
        started = time.perf_counter()
        for _, body in objects:
            with conn.transaction(), conn.cursor() as cursor:
                for line in gzip.decompress(body).splitlines():
                    record: dict[str, Any] = json.loads(line)
                    values = [
                        None if record.get(c) is None else str(record[c]) for c in BASELINE_COLUMNS
                    ]
                    cursor.execute(insert, values, prepare=False)
        return time.perf_counter() - started, pg_cpu() - cpu


def postmaster_of(admin_dsn: str) -> psutil.Process:
    """The server's main process (PostgreSQL runs on this machine)."""
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        postmaster = psutil.Process(int(row[0])).parent()
    assert postmaster is not None
    return postmaster


def postgres_cpu_s(postmaster: psutil.Process) -> float:
    """CPU seconds used so far by the server's live processes."""
    total = 0.0
    for process in [postmaster, *postmaster.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def own_cpu_s(postmaster: psutil.Process) -> float:
    """CPU seconds of this process and its children, PostgreSQL's processes excepted (an
    embedded server is a child of this process; its CPU is counted by postgres_cpu_s)."""
    me = psutil.Process()
    server = {postmaster.pid} | {p.pid for p in postmaster.children(recursive=True)}
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        if child.pid in server:
            continue
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
    return total


def wal_position(admin_dsn: str) -> str:
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


def wal_bytes_since(admin_dsn: str, start: str) -> int:
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint", (start,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def schema_bytes(dsn: str, schema: str) -> tuple[int, int]:
    """Size of the tables of ``schema`` with their indexes and TOAST, and of the indexes."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint,"
            " coalesce(sum(pg_indexes_size(c.oid)), 0)::bigint FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def count_rows(admin_dsn: str, table: str) -> int:
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=6)
    parser.add_argument("--rows-per-object", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--prepare-processes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    server: EmbeddedPostgres | None = None
    admin_dsn = os.environ.get("DATABASE_URL")
    tmp = tempfile.TemporaryDirectory(prefix="loader-bench-")
    if not admin_dsn:
        server = EmbeddedPostgres(Path(tmp.name) / "data")
        server.start()
        admin_dsn = server.dsn()
    try:
        database = f"bench_{secrets.token_hex(4)}"
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        bench_admin = with_database(admin_dsn, database)
        password = secrets.token_urlsafe(16)
        bootstrap(bench_admin, role_passwords={names.DB_LOADER_ROLE: password})
        loader_dsn = with_credentials(bench_admin, names.DB_LOADER_ROLE, password)

        started = time.perf_counter()
        objects = make_objects(args.objects, args.rows_per_object, args.seed)
        total = args.objects * args.rows_per_object
        size = sum(len(body) for _, body in objects)
        print(
            f"{args.objects} objects x {args.rows_per_object:,} rows ({size / 1e6:.1f} MB gzip),"
            f" generated in {time.perf_counter() - started:.1f} s"
        )
        executor = ProcessPoolExecutor(
            args.prepare_processes, mp_context=multiprocessing.get_context("spawn")
        )
        # Start the workers (interpreter and imports) before the clock does.
        warm_up = [
            executor.submit(prepare_object, "warm-up.jsonl", b"", LIMITS)
            for _ in range(args.prepare_processes)
        ]
        for future in warm_up:
            future.result()
        postmaster = postmaster_of(admin_dsn)
        pg_cpu = functools.partial(postgres_cpu_s, postmaster)
        py_before = own_cpu_s(postmaster)
        wal_start = wal_position(admin_dsn)
        ours, pg_ours = asyncio.run(
            run_cardstream(loader_dsn, objects, args.concurrency, executor, pg_cpu)
        )
        cpu_ours = own_cpu_s(postmaster) - py_before, pg_ours
        wal_ours = wal_bytes_since(admin_dsn, wal_start)
        stored_ours, indexes_ours = schema_bytes(bench_admin, "cardstream")
        executor.shutdown()
        py_before = own_cpu_s(postmaster)
        wal_start = wal_position(admin_dsn)
        base, pg_base = run_baseline(bench_admin, objects, pg_cpu)
        cpu_base = own_cpu_s(postmaster) - py_before, pg_base
        wal_base = wal_bytes_since(admin_dsn, wal_start)
        stored = count_rows(bench_admin, "cardstream.transaction")
        base_stored = count_rows(bench_admin, "baseline.transactions")
        assert stored == total, stored
        assert base_stored == total, base_stored
        ours_rate, base_rate = total / ours, total / base
        header = f"{'loader':<44} {'rows':>7} {'seconds':>8} {'rows/s':>8}"
        print(header + f" {'CPU s (py+pg)':>14} {'rows/CPU-s':>10}")
        for name, seconds, (py, pg) in (
            (
                f"cardstream (c={args.concurrency}, {args.prepare_processes} prepare proc.)",
                ours,
                cpu_ours,
            ),
            ("baseline (all TEXT, one INSERT per row)", base, cpu_base),
        ):
            print(
                f"{name:<44} {total:>7,} {seconds:>8.2f} {total / seconds:>8,.0f}"
                f" {py:>6.1f}+{pg:<7.1f} {total / (py + pg):>10,.0f}"
            )
        print(f"ratio (rows/s): {ours_rate / base_rate:.1f}x")
        print(
            f"WAL written per row: cardstream {wal_ours / total:,.0f} bytes,"
            f" baseline {wal_base / total:,.0f} bytes"
        )
        print(
            f"stored per row (cardstream schema): {stored_ours / total:,.0f} bytes,"
            f" of which indexes {indexes_ours / total:,.0f} bytes"
        )
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    finally:
        if server is not None:
            server.stop()
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
