"""Loader throughput with the monitoring rules enabled versus disabled, in the same run.

Generates ``--rows`` rows (``cardstream generate``'s model, fixed seed) and turns them into
objects of ``--object-rows`` NDJSON envelope lines, as the stream-writer lands them
(tokenized by a bench key). Every object is then loaded twice, into two fresh databases on
the same server: once with no hook and once with the rule monitor as the after-insert
hook. The two loads of an object run back to back, alternating which goes first, so both
see the same machine load.

Two figures per run:

* load transaction: ``load_batch`` only (ledger, COPY, upserts, facts, rules, commit);
* per object: the loader's work on an object it has downloaded, i.e. ``prepare`` (parse
  and validate every line, the same with or without rules, timed once per object) plus
  the load transaction.

    .venv/bin/python bench/rules_bench.py --rows 50000
    DATABASE_URL=postgresql://postgres:...@127.0.0.1:5432/postgres \
        .venv/bin/python bench/rules_bench.py

The acceptance bar is 70 % (rules enabled over disabled).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import secrets
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import psycopg
from prometheus_client import CollectorRegistry

from cardstream.generator import write_csv
from cardstream_monitoring.monitor import AlertMonitor
from cardstream_monitoring.rules import load_rules
from cardstream_shared import resource_names as names
from cardstream_shared.pan import PanKeyring
from cardstream_shared.stream_records import EnvelopeWriter
from cardstream_shared.transaction_input import Transaction, read_csv
from db_loader.backfill import envelope_line
from db_loader.ledger import SourceObject
from db_loader.loader import PartitionCache, load_batch
from db_loader.migrate import bootstrap, with_database
from db_loader.rows import prepare


def postgres() -> contextlib.AbstractContextManager[str]:
    from cardstream.local.embedded_pg import scratch_postgres

    return scratch_postgres(os.environ.get("DATABASE_URL"), prefix="rules-bench-")


def scratch_database(admin_url: str) -> str:
    name = f"rules_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(admin_url, name)
    bootstrap(url, role_passwords={})
    return url


def drop(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def envelope_objects(csv_path: Path, object_rows: int) -> list[list[tuple[int, bytes]]]:
    """The CSV as landed objects: numbered NDJSON envelope lines, ``object_rows`` each."""
    keyring = PanKeyring({"bench": secrets.token_bytes(32)}, "bench")
    received = dt.datetime.now(dt.UTC)
    objects: list[list[tuple[int, bytes]]] = [[]]
    with csv_path.open(encoding="utf-8", newline="") as handle:
        writer = EnvelopeWriter(client_id="bench", received_at=received)
        for txn in read_csv(handle):
            assert isinstance(txn, Transaction), txn
            if len(objects[-1]) == object_rows:
                objects.append([])
            line = envelope_line(txn, keyring, writer)
            objects[-1].append((len(objects[-1]) + 1, line))
    return objects


async def bench(admin_url: str, csv_path: Path, object_rows: int) -> None:
    objects = envelope_objects(csv_path, object_rows)
    plain_url, rules_url = scratch_database(admin_url), scratch_database(admin_url)
    pools = [
        await asyncpg.create_pool(
            url, min_size=1, max_size=1, server_settings={"role": names.DB_LOADER_ROLE}
        )
        for url in (plain_url, rules_url)
    ]
    registry = CollectorRegistry()
    monitor = AlertMonitor(load_rules(), registry=registry)
    hooks = [[], [monitor.after_insert]]
    partitions = [PartitionCache(), PartitionCache()]
    elapsed = [0.0, 0.0]
    preparing = 0.0
    rows = 0
    alerts = 0
    try:
        for index, lines in enumerate(objects):
            started = time.perf_counter()
            batch = prepare(lines)
            preparing += time.perf_counter() - started
            source = SourceObject(bucket="bench", key=f"raw/object-{index:06d}", etag="e")
            order = (0, 1) if index % 2 == 0 else (1, 0)
            for which in order:
                pool = pools[which]
                assert pool is not None
                started = time.perf_counter()
                result = await load_batch(
                    pool, source, batch, partitions=partitions[which], hooks=hooks[which]
                )
                elapsed[which] += time.perf_counter() - started
                if which == 0:
                    rows += result.inserted_count
                else:
                    alerts += len(monitor.after_commit(result))
    finally:
        for pool in pools:
            if pool is not None:
                await pool.close()
        drop(admin_url, plain_url)
        drop(admin_url, rules_url)
    print(f"objects: {len(objects)} of up to {object_rows} rows, {rows:,} rows, {alerts:,} alerts")
    print(f"prepare (parse + validate, same for both): {preparing:7.2f} s")
    for label, extra in (("load transaction", 0.0), ("per object", preparing)):
        plain, ruled = rows / (elapsed[0] + extra), rows / (elapsed[1] + extra)
        print(
            f"{label:>16}: disabled {elapsed[0] + extra:6.2f} s {plain:8,.0f} rows/s | "
            f"enabled {elapsed[1] + extra:6.2f} s {ruled:8,.0f} rows/s | "
            f"enabled/disabled {ruled / plain:.1%} (bar: >= 70%)"
        )
    for quantile in (0.5, 0.99):
        bound = histogram_quantile(registry, "cardstream_loader_commit_to_alert_seconds", quantile)
        print(f"commit-to-alert p{quantile * 100:g}: <= {bound} s (histogram bucket bound)")


def histogram_quantile(registry: CollectorRegistry, name: str, quantile: float) -> float | None:
    """Upper bound of the bucket holding ``quantile`` of the observations, as Prometheus'
    histogram_quantile would bracket it; None without observations."""
    buckets = sorted(
        (float(sample.labels["le"]), sample.value)
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == f"{name}_bucket"
    )
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    return next(bound for bound, count in buckets if count >= quantile * total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--object-rows", type=int, default=1_000, help="rows per object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rules-bench-csv-") as folder:
        csv_path = Path(folder) / "rows.csv"
        write_csv(csv_path, args.rows, args.seed)
        with postgres() as admin_url:
            asyncio.run(bench(admin_url, csv_path, args.object_rows))


if __name__ == "__main__":
    main()
