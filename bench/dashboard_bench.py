"""Benchmark of the dashboard's database snapshot: how long every panel takes to read.

Generates ``--rows`` transactions with cardstream.generator, loads them through the
db-loader's load path into a fresh embedded PostgreSQL (or ``DATABASE_URL``), then times
``read_panels`` (all views in one REPEATABLE READ snapshot, as the service runs it) and each
view on its own. Prints figures; it never fails on time.

Baseline in the same run: each view's query sent as it is written (its definition from
``pg_get_viewdef``, the SQL a BI tool pointed at the tables would send), without the view.
The views are plain views, so the two should cost the same; the comparison shows that
reading through them adds nothing.

    .venv/bin/python bench/dashboard_bench.py --rows 200000 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from cardstream.generator import write_csv
from cardstream.local.embedded_pg import EmbeddedPostgres
from cardstream_shared import resource_names as names
from cardstream_shared.database import create_pool
from cardstream_shared.pan import PanKeyring
from dashboard.queries import Limits, read_panels
from db_loader.backfill import csv_batches
from db_loader.db import APPLICATION_NAME
from db_loader.loader import PartitionCache, load_batch
from db_loader.migrate import bootstrap, with_credentials, with_database


async def load(csv_path: Path, loader_dsn: str) -> float:
    keyring = PanKeyring.from_secret_string(PanKeyring.new_secret_string("bench-1"))
    pool = await create_pool(
        loader_dsn,
        application_name=APPLICATION_NAME,
        min_size=1,
        max_size=2,
        statement_timeout_s=600,
    )
    started = time.perf_counter()
    try:
        partitions = PartitionCache()
        for source, batch in csv_batches(csv_path, keyring):
            await load_batch(pool, source, batch, partitions=partitions)
    finally:
        await pool.close()
    return time.perf_counter() - started


async def measure(analyst_dsn: str, owner_dsn: str, repeat: int) -> None:
    conn = await asyncpg.connect(analyst_dsn)
    # The analyst role reads only the views; both sides of the comparison run as the owner.
    owner = await asyncpg.connect(owner_dsn)
    limits = Limits(
        map_max_locations=3000,
        hourly_trend_hours=48,
        daily_trend_days=120,
        freshness_window_minutes=60,
    )
    print(f"load average: {os.getloadavg()}")
    try:
        timings = []
        for _ in range(repeat):
            started = time.perf_counter()
            await read_panels(conn, limits)
            timings.append(time.perf_counter() - started)
        print(
            f"snapshot (every panel): median {statistics.median(timings) * 1000:.0f} ms,"
            f" min {min(timings) * 1000:.0f} ms, max {max(timings) * 1000:.0f} ms"
            f" over {repeat} reads"
        )
        print(f"  {'view':28s} {'through the view':>18s} {'its query inline':>18s}")
        for view in names.DASHBOARD_VIEWS:
            definition = await owner.fetchval(
                "SELECT pg_get_viewdef($1::regclass, true)", f"cardstream.{view}"
            )
            medians = []
            for query in (f"SELECT * FROM cardstream.{view}", definition.rstrip().rstrip(";")):
                view_timings = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    await owner.fetch(query)
                    view_timings.append(time.perf_counter() - started)
                medians.append(statistics.median(view_timings) * 1000)
            print(f"  {view:28s} {medians[0]:15.1f} ms {medians[1]:15.1f} ms")
    finally:
        await conn.close()
        await owner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as tmp:
        folder = Path(tmp)
        server = None
        admin = os.environ.get("DATABASE_URL")
        if admin is None:
            server = EmbeddedPostgres(folder / "pg")
            server.start()
            admin = server.dsn()
        try:
            # An admin URL naming a maintenance database bootstraps the `cardstream` one.
            database = with_database(admin, names.DB_NAME)
            passwords = {
                names.DB_LOADER_ROLE: uuid.uuid4().hex,
                names.DB_ANALYST_ROLE: uuid.uuid4().hex,
            }
            bootstrap(admin, role_passwords=passwords)
            csv_path = folder / "bench.csv"
            started = time.perf_counter()
            write_csv(csv_path, args.rows, args.seed)
            print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f} s")
            seconds = asyncio.run(
                load(
                    csv_path,
                    with_credentials(
                        database, names.DB_LOADER_ROLE, passwords[names.DB_LOADER_ROLE]
                    ),
                )
            )
            print(f"loaded in {seconds:.1f} s ({args.rows / seconds:,.0f} rows/s)")
            asyncio.run(
                measure(
                    with_credentials(
                        database, names.DB_ANALYST_ROLE, passwords[names.DB_ANALYST_ROLE]
                    ),
                    database,
                    args.repeat,
                )
            )
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
