"""Loader throughput with the monitoring rules enabled versus disabled, in the same run.

Generates ``--rows`` rows (``cardstream generate``'s model, fixed seed), prepares them as
objects of ``--object-rows`` rows (tokenized, validated, as the loader receives them), then
loads every object twice, into two fresh databases on the same server: once with no hook
and once with the rule monitor as the after-insert hook. The two loads of an object run
back to back, alternating which goes first, so both see the same machine load. Only the
load transactions are timed (``load_batch``: ledger, COPY, upserts, facts, rules, commit).

    .venv/bin/python bench/rules_bench.py --rows 50000
    DATABASE_URL=postgresql://postgres:...@127.0.0.1:5432/postgres \
        .venv/bin/python bench/rules_bench.py

Prints rows per second for both and their ratio (the acceptance bar is 70 %).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psycopg
from prometheus_client import CollectorRegistry

from cardstream.generator import write_csv
from cardstream_shared import resource_names as names
from cardstream_shared.pan import PanKeyring
from db_loader.backfill import csv_batches
from db_loader.loader import PartitionCache, load_batch
from db_loader.migrate import bootstrap, with_database
from db_loader.rules.config import load_rules
from db_loader.rules.monitor import AlertMonitor


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from cardstream.local.embedded_pg import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="rules-bench-") as folder:
        server = EmbeddedPostgres(
            Path(folder) / "data",
            settings={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"},
        )
        server.start()
        try:
            yield server.dsn()
        finally:
            server.stop()


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


async def bench(admin_url: str, csv_path: Path, object_rows: int) -> None:
    keyring = PanKeyring({"bench": secrets.token_bytes(32)}, "bench")
    objects = list(csv_batches(csv_path, keyring, chunk_rows=object_rows))
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
    rows = 0
    alerts = 0
    try:
        for index, (source, batch) in enumerate(objects):
            rows += len(batch.rows)
            order = (0, 1) if index % 2 == 0 else (1, 0)
            for which in order:
                pool = pools[which]
                assert pool is not None
                # Partitions are created outside the timed region: both runs need them.
                await partitions[which].ensure(pool, batch.months())
                started = time.perf_counter()
                result = await load_batch(
                    pool, source, batch, partitions=partitions[which], hooks=hooks[which]
                )
                elapsed[which] += time.perf_counter() - started
                if which == 1:
                    alerts += len(monitor.after_commit(result))
    finally:
        for pool in pools:
            if pool is not None:
                await pool.close()
        drop(admin_url, plain_url)
        drop(admin_url, rules_url)
    plain, ruled = rows / elapsed[0], rows / elapsed[1]
    print(f"objects: {len(objects)} of up to {object_rows} rows, {rows:,} rows, {alerts:,} alerts")
    print(f"rules disabled: {elapsed[0]:7.2f} s  {plain:10,.0f} rows/s")
    print(f"rules enabled:  {elapsed[1]:7.2f} s  {ruled:10,.0f} rows/s")
    print(f"enabled / disabled: {ruled / plain:.1%}  (bar: >= 70%)")
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
