"""Freshness benchmark: from a record's scheduled POST to the commit of its row in PostgreSQL.

Starts its own local stack (``cardstream.local.stack``, the code ``cardstream up`` runs) on
its own embedded PostgreSQL, which records commit times (``track_commit_timestamp``), and
drives an open-loop load through the real API: a request of ``--batch`` generated rows (CSV,
as ``cardstream replay`` posts them) leaves every ``batch / rate`` seconds whether or not
earlier ones were answered; records a 503 names as not accepted are resent after its
``Retry-After``. For every accepted record it measures, on one machine clock:

- POST -> row: from the record's scheduled send to the commit of the transaction that
  inserted its row (PostgreSQL's commit timestamp of the row's ``xmin``);
- the hops: the API's answer (scheduled send -> response), the stream until the object
  lands (the API's ``received_at`` -> the S3 event time the loader's ledger keeps), and
  S3 -> SQS -> loader commit (S3 event time -> commit).

It prints the achieved rate, accepted and loaded counts, the percentiles of each, every
process's resident memory at start, after the first minute and at the end, and its CPU use.
The same run compares with what the original design would give: its stream buffer alone
held a record 2 s before three Lambdas (writer, notification, loader) ran, so no record
could be fresher than that buffer. ``--sweep`` raises the rate step by step and reports
the highest whose p99 stays under 5 s, and which stage bounds it.

Exit status: 1 when an accepted record is missing from PostgreSQL or is there twice; never
because of time.

    .venv/bin/python bench/e2e_bench.py --rate 1000 --seconds 600
    .venv/bin/python bench/e2e_bench.py --rate 1000 --seconds 120 --profile low-latency
    .venv/bin/python bench/e2e_bench.py --sweep
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import aiohttp
import psutil
import psycopg

from cardstream.generator import write_csv
from cardstream.local.embedded_pg import EmbeddedPostgres
from cardstream.local.stack import LocalStack, add_arguments, start
from cardstream.replay import retry_after_seconds

# Settings of each profile, passed to the services through their environment.
PROFILES: dict[str, dict[str, str]] = {
    "default": {},
    # Objects flushed after 0.5 s instead of 2 s, shards polled every 0.1 s instead of
    # 0.25 s (GetRecords stays within AWS's five calls a second per shard), and the loader
    # asks again 50 ms after an empty receive instead of 200 ms.
    "low-latency": {
        "WRITER_FLUSH_MAX_AGE_S": "0.5",
        "WRITER_POLL_INTERVAL_S": "0.1",
        "LOADER_EMPTY_RECEIVE_PAUSE_S": "0.05",
    },
}
GOAL_P99_S = 5.0
# A single-threaded process using this much of a core is what holds the stage.
SATURATED_PERCENT = 85.0
ORIGINAL_BUFFER_S = 2.0
ROWS_QUERY = """
SELECT t.trans_num,
       extract(epoch FROM t.received_at)::float8,
       extract(epoch FROM l.event_time)::float8,
       extract(epoch FROM pg_xact_commit_timestamp(t.xmin))::float8
  FROM cardstream.transaction t JOIN cardstream.object_ledger l USING (object_id)
 WHERE t.trans_num = ANY(%s)
"""


@dataclass
class Sent:
    """Client-side times of one record (wall clock, seconds since the epoch)."""

    scheduled: float
    answered: float = 0.0


@dataclass
class Usage:
    """Resident memory and CPU seconds of one process and its children."""

    rss: int
    cpu: float


@dataclass
class Run:
    rate: float
    seconds: float
    batch: int
    sent: dict[str, Sent] = field(default_factory=dict)
    rejected: int = 0
    resent: int = 0
    requests: int = 0
    sending_s: float = 0.0
    driver_cpu: float = 0.0
    usage: list[tuple[str, dict[str, Usage]]] = field(default_factory=list)


def percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    return f"p50 {at(0.5):6.3f}  p95 {at(0.95):6.3f}  p99 {at(0.99):6.3f}  max {ordered[-1]:6.3f} s"


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else float("inf")


def process_usage(pids: dict[str, int]) -> dict[str, Usage]:
    usage = {}
    for name, pid in pids.items():
        try:
            process = psutil.Process(pid)
            family = [process, *process.children(recursive=True)]
            rss = process.memory_info().rss
            cpu = 0.0
            for member in family:
                times = member.cpu_times()
                cpu += times.user + times.system
            usage[name] = Usage(rss, cpu)
        except psutil.NoSuchProcess:
            continue
    return usage


def csv_rows(path: Path) -> tuple[str, Iterator[tuple[str, str]]]:
    """The CSV header line and (trans_num, CSV line) of each generated row."""
    handle = path.open(newline="", encoding="utf-8")
    reader = csv.reader(handle)
    header = next(reader)
    position = header.index("trans_num")

    def rows() -> Iterator[tuple[str, str]]:
        with handle:
            for values in reader:
                line = io.StringIO()
                csv.writer(line, lineterminator="\n").writerow(values)
                yield values[position], line.getvalue()

    head = io.StringIO()
    csv.writer(head, lineterminator="\n").writerow(header)
    return head.getvalue(), rows()


async def post(
    session: aiohttp.ClientSession, header: str, batch: list[tuple[str, str]], run: Run
) -> None:
    """Post ``batch`` until every record is accepted or rejected."""
    pending = batch
    attempt = 0
    while pending:
        run.requests += 1
        try:
            async with session.post(
                "/v1/transactions/batch",
                data=header + "".join(line for _, line in pending),
                headers={"Content-Type": "text/csv"},
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            status, retry_after, body = 0, None, None
        answered = time.time()
        results = body.get("results") if isinstance(body, dict) else None
        if status in (200, 503) and isinstance(results, list):
            outcome = {item["index"]: item["status"] for item in results}
            again = []
            for index, (trans_num, line) in enumerate(pending):
                verdict = outcome.get(index)
                if verdict == "accepted":
                    run.sent[trans_num].answered = answered
                elif verdict == "rejected":
                    run.rejected += 1
                    run.sent.pop(trans_num, None)
                else:
                    again.append((trans_num, line))
            pending = again
        if pending:
            run.resent += len(pending)
            attempt += 1
            wait = retry_after_seconds(retry_after)
            await asyncio.sleep(wait if wait is not None else min(5.0, 0.2 * 2**attempt))


async def drive(
    api_url: str,
    token: str,
    header: str,
    rows: Iterator[tuple[str, str]],
    run: Run,
    pids: dict[str, int],
    connections: int,
) -> None:
    """Open loop: batch k is sent at start + k * batch / rate, answered or not (a request
    waiting for one of the ``connections`` counts that wait in its latency)."""
    async with aiohttp.ClientSession(
        base_url=api_url,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=120),
    ) as session:
        tasks: list[asyncio.Task[None]] = []
        interval = run.batch / run.rate
        batches = int(run.rate * run.seconds / run.batch)
        started = time.time()
        cpu = time.process_time()
        run.usage.append(("start", process_usage(pids)))
        minute_sampled = False
        for k in range(batches):
            scheduled = started + k * interval
            delay = scheduled - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not minute_sampled and time.time() - started >= 60:
                run.usage.append(("after 1 min", process_usage(pids)))
                minute_sampled = True
            batch = [next(rows) for _ in range(run.batch)]
            for trans_num, _ in batch:
                run.sent[trans_num] = Sent(scheduled)
            tasks.append(asyncio.create_task(post(session, header, batch, run)))
        await asyncio.gather(*tasks)
        run.sending_s = time.time() - started
        run.driver_cpu = time.process_time() - cpu


def wait_loaded(dsn: str, expected: int, timeout_s: float) -> None:
    """Wait until the transaction table holds ``expected`` rows (every run of this bench
    so far), or the timeout passes; what is missing is counted afterwards."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM cardstream.transaction").fetchone()
            if row is not None and row[0] >= expected:
                return
            time.sleep(1.0)


def report(
    run: Run, dsn: str, pids: dict[str, int], profile: str, loaded_before: int
) -> tuple[bool, float, str]:
    """Print the run's figures; (nothing lost or doubled, p99 POST->row, bounding stage)."""
    accepted = [t for t, s in run.sent.items() if s.answered]
    wait_loaded(dsn, loaded_before + len(accepted), timeout_s=max(120.0, run.seconds))
    run.usage.append(("end", process_usage(pids)))
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(ROWS_QUERY, (accepted,)).fetchall()
    loaded = len({row[0] for row in rows})
    counts: dict[str, int] = {}
    for trans_num, *_ in rows:
        counts[trans_num] = counts.get(trans_num, 0) + 1
    doubled = sum(1 for c in counts.values() if c > 1)
    total, api, stream, loader = [], [], [], []
    for trans_num, received, landed, committed in rows:
        sent = run.sent[trans_num]
        total.append(committed - sent.scheduled)
        api.append(sent.answered - sent.scheduled)
        stream.append(landed - received)
        loader.append(committed - landed)
    offered = len(run.sent) + run.rejected
    print(f"\nprofile {profile}: {run.rate:,.0f} records/s offered for {run.seconds:.0f} s")
    print(
        f"  achieved      {offered / run.sending_s:,.0f} records/s sent "
        f"({run.requests:,} requests of {run.batch}, {run.resent:,} records resent)"
    )
    print(
        f"  accepted      {len(accepted):,}   loaded {loaded:,}   rejected {run.rejected:,}   "
        f"doubled {doubled:,}"
    )
    print(f"  POST -> row   {percentiles(total)}")
    print(f"  API answer    {percentiles(api)}")
    print(f"  stream -> S3  {percentiles(stream)}")
    print(f"  S3 -> commit  {percentiles(loader)}")
    print(
        f"  original design, same records: at least {ORIGINAL_BUFFER_S:.0f} s in its stream "
        "buffer before its three Lambdas ran"
    )
    first = dict(run.usage)
    print("  process        RSS start  after 1 min      end   growth   CPU (% of one core)")
    span = max(run.sending_s, 1e-9)
    busiest = ("", 0.0)
    for name, end in run.usage[-1][1].items():
        begin = first["start"].get(name)
        minute = first.get("after 1 min", {}).get(name, begin)
        if begin is None or minute is None:
            continue
        growth = (end.rss - minute.rss) / minute.rss * 100
        cpu = (end.cpu - begin.cpu) / span * 100
        busiest = max(busiest, (name, cpu), key=lambda item: item[1])
        print(
            f"  {name:<14} {begin.rss / 2**20:7.0f} MB {minute.rss / 2**20:8.0f} MB "
            f"{end.rss / 2**20:6.0f} MB {growth:+6.1f}%  {cpu:5.0f}"
        )
    print(f"  {'(this driver)':<14} {'':>36}  {run.driver_cpu / span * 100:5.0f}")
    hops = {"API answer": api, "stream -> S3": stream, "S3 -> commit": loader}
    slowest = max(hops, key=lambda name: p99(hops[name]) if hops[name] else 0.0)
    cores, load = os.cpu_count() or 1, os.getloadavg()[0]
    if busiest[1] >= SATURATED_PERCENT:
        cause = f"the CPU of {busiest[0]} ({busiest[1]:.0f}% of a core)"
    elif load > cores:
        cause = (
            f"the machine's CPU (load average {load:.1f} on {cores} cores; the busiest "
            f"process, {busiest[0]}, got {busiest[1]:.0f}% of a core)"
        )
    else:
        cause = f"no saturated process (busiest {busiest[0]} at {busiest[1]:.0f}% of a core)"
    bound = f"{slowest} hop; {cause}"
    print(f"  longest hop at p99: the {bound}")
    print(f"  load average {os.getloadavg()}")
    intact = loaded == len(accepted) and doubled == 0
    if not intact:
        print(f"  LOST {len(accepted) - loaded} accepted records", file=sys.stderr)
    return intact, (p99(total) if total else float("inf")), bound


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=1000.0, help="records/s offered")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=10, help="records per request")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default")
    parser.add_argument("--sweep", action="store_true", help="raise the rate until p99 > 5 s")
    parser.add_argument("--sweep-step", type=float, default=250.0)
    parser.add_argument("--sweep-max", type=float, default=4000.0)
    parser.add_argument("--stack-shards", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64, help="to the API at most")
    args = parser.parse_args()
    # SIGTERM stops the stack as Ctrl-C does (a bench in the background ignores SIGINT).
    signal.signal(signal.SIGTERM, _raise_interrupt)
    os.environ.update(PROFILES[args.profile])
    print(f"load average at start: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="cardstream-e2e-") as folder:
        root = Path(folder)
        steps = int(args.sweep_max // args.sweep_step)
        rates = [args.sweep_step * k for k in range(1, steps + 1)] if args.sweep else [args.rate]
        total_rows = int(sum(rates) * args.seconds) + len(rates) * args.batch
        csv_path = root / "rows.csv"
        write_csv(csv_path, rows=total_rows, seed=7)
        header, rows = csv_rows(csv_path)
        postgres = EmbeddedPostgres(root / "pgdata", settings={"track_commit_timestamp": "on"})
        postgres.start()
        stack: LocalStack | None = None
        try:
            os.environ["DATABASE_URL"] = postgres.dsn()
            stack_args = argparse.ArgumentParser()
            add_arguments(stack_args)
            namespace = stack_args.parse_args(
                [
                    "--state-dir",
                    str(root / "state"),
                    "--shards",
                    str(args.stack_shards),
                    "--api-port",
                    "0",
                    "--dashboard-port",
                    "0",
                ]
            )
            stack, info = start(namespace)
            pids = dict(info["processes"])
            assert postgres.process is not None
            pids["postgres"] = postgres.process.pid
            dsn = info["admin_database_url"]
            passed: tuple[float, str] | None = None
            loaded_before = 0
            for rate in rates:
                run = Run(rate=rate, seconds=args.seconds, batch=args.batch)
                asyncio.run(
                    drive(info["api_url"], info["token"], header, rows, run, pids, args.connections)
                )
                intact, tail, bound = report(run, dsn, pids, args.profile, loaded_before)
                loaded_before += len(run.sent)
                if not intact:
                    return 1
                if not args.sweep:
                    break
                if tail > GOAL_P99_S:
                    print(
                        f"\nsweep: highest rate with p99 POST->row under {GOAL_P99_S:.0f} s: "
                        + (f"{passed[0]:,.0f} records/s" if passed else "none")
                        + f"; at {rate:,.0f} records/s p99 was {tail:.2f} s, held by the {bound}"
                    )
                    break
                passed = (rate, bound)
        finally:
            if stack is not None:
                stack.stop()
            postgres.stop()
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
