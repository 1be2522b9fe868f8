"""Benchmark of bounded work per request: the worst bodies ingest-api's limits allow.

For each batch format (JSON array, NDJSON, CSV) and each worst body within the limits (the
cheapest records at the record limit and far past it, the largest body at the size limit,
deep nesting, many fields, blank lines, one long line), it posts the body to the API as a
real process (``python -m ingest_api`` against the local stack's moto server) and prints
the time to the answer, the answer's status, and the worst ``/healthz`` latency measured
while the body was being answered (``/healthz`` polled every 20 ms on its own connection).

The same bodies go, in the same run, to a baseline API process started from another
source tree: by default a git worktree of ``--baseline-commit`` (the code before reading
was bounded), whose ``shared/src``, ``services/ingest-api/src`` and ``monitoring/src`` go
first on its ``PYTHONPATH``. Goal on the 2-core development machine: every body refused or
answered in under 1 s, ``/healthz`` under 100 ms meanwhile. Figures: docs/benchmarks.md.

    .venv/bin/python bench/body_limits_bench.py [--baseline-commit COMMIT] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import boto3
from ingest_bench_setup import FAKE_AWS, REGION, ingest_env, prepare_merchant, start, stop

from cardstream.local.ports import free_port
from cardstream_shared.contract import KAGGLE_FIELDS, kaggle_example

STREAM = "bench-bodies"
MAX_BODY = 8 * 1024 * 1024
MAX_RECORDS = 5_000
REPO = Path(__file__).resolve().parent.parent


# --- the worst bodies ------------------------------------------------------------------------


def _fill(unit: bytes, head: bytes = b"", tail: bytes = b"", *, count: int | None = None) -> bytes:
    """``head``, then ``unit`` repeated ``count`` times (as often as fits under the size
    limit by default), then ``tail``."""
    if count is None:
        count = (MAX_BODY - len(head) - len(tail)) // len(unit)
    return head + unit * count + tail


def _json_array(unit: bytes, count: int | None = None) -> bytes:
    return _fill(unit + b",", b"[", b"0]", count=count)


def _row(n: int, **changes: object) -> dict[str, object]:
    return dict(kaggle_example(), trans_num=f"b{n:012d}", **changes)


def _long_row(n: int) -> dict[str, object]:
    """A valid record with every text field at its longest (the largest valid records)."""
    return _row(n, merchant="m" * 200, street="s" * 200, job="j" * 200, first="f" * 100,
                last="l" * 100, city="c" * 100)  # fmt: skip


def _wrong_row(n: int) -> dict[str, object]:
    """A record with every field wrong: the most errors a record of known fields can have."""
    return {field: [] for field in KAGGLE_FIELDS} | {"trans_num": f"w{n:011d}"}


def _csv(rows: list[dict[str, object]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(KAGGLE_FIELDS)
    writer.writerows([[row[f] for f in KAGGLE_FIELDS] for row in rows])
    return out.getvalue().encode()


def bodies() -> Iterator[tuple[str, str, str, bytes]]:
    """(format, case, media type, body) of every worst body."""
    # As many fields as a record may have (32), every one unknown but trans_num.
    many_fields = json.dumps({f"x{i}": i for i in range(31)} | {"trans_num": "f"}).encode()
    yield "json", "{} at the record limit", "application/json", _json_array(b"{}", MAX_RECORDS - 1)
    yield "json", "{} to the size limit", "application/json", _json_array(b"{}")
    yield "json", "0 to the size limit", "application/json", _json_array(b"0")
    yield (
        "json",
        "deep nesting",
        "application/json",
        b"[" * (MAX_BODY // 2) + b"]" * (MAX_BODY // 2),
    )
    yield (
        "json",
        "31 unknown fields a record",
        "application/json",
        _json_array(many_fields, MAX_RECORDS - 1),
    )
    yield (
        "json",
        "every field wrong, record limit",
        "application/json",
        json.dumps([_wrong_row(n) for n in range(MAX_RECORDS)]).encode(),
    )
    yield (
        "json",
        "longest valid records, limit",
        "application/json",
        json.dumps([_long_row(n) for n in range(MAX_RECORDS)]).encode(),
    )
    yield "json", "one 8 MiB string", "application/json", b'["' + b"x" * (MAX_BODY - 10) + b'"]'
    ndjson = "application/x-ndjson"
    yield "ndjson", "{} at the record limit", ndjson, b"{}\n" * MAX_RECORDS
    yield "ndjson", "{} to the size limit", ndjson, _fill(b"{}\n")
    yield "ndjson", "blank lines to the size limit", ndjson, _fill(b"\n")
    yield "ndjson", "deep nesting, each line", ndjson, _fill(b"[" * 30_000 + b"\n")
    yield (
        "ndjson",
        "every field wrong, record limit",
        ndjson,
        b"\n".join(json.dumps(_wrong_row(n)).encode() for n in range(MAX_RECORDS)),
    )
    yield (
        "ndjson",
        "longest valid records, limit",
        ndjson,
        b"\n".join(json.dumps(_long_row(n)).encode() for n in range(MAX_RECORDS)),
    )
    header = b"cc_num\n"
    yield "csv", "one column, record limit", "text/csv", header + b"1\n" * MAX_RECORDS
    yield "csv", "one column to the size limit", "text/csv", _fill(b"1\n", header)
    yield "csv", "blank lines to the size limit", "text/csv", _fill(b"\n", header)
    yield "csv", "one line to the size limit", "text/csv", _fill(b"1,", header)
    yield (
        "csv",
        "every field wrong, record limit",
        "text/csv",
        _csv(
            [dict.fromkeys(KAGGLE_FIELDS, "x") | {"trans_num": f"w{n}"} for n in range(MAX_RECORDS)]
        ),
    )
    yield (
        "csv",
        "longest valid records, limit",
        "text/csv",
        _csv([_long_row(n) for n in range(MAX_RECORDS)]),
    )


# --- measuring one body ----------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    seconds: float
    healthz_worst_ms: float


async def answer(api: str, token: str, media_type: str, body: bytes) -> Answer:
    """Post ``body``; meanwhile poll /healthz on another connection and keep its worst."""
    done = asyncio.Event()
    worst = 0.0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as poller:

        async def poll() -> None:
            nonlocal worst
            while not done.is_set():
                started = time.perf_counter()
                async with poller.get(f"{api}/healthz") as response:
                    await response.read()
                worst = max(worst, time.perf_counter() - started)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.02)

        polling = asyncio.create_task(poll())
        await asyncio.sleep(0.1)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": media_type}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as client:
            started = time.perf_counter()
            async with client.post(f"{api}/v1/transactions/batch", data=body, headers=headers) as r:
                await r.read()
                status = r.status
            seconds = time.perf_counter() - started
        done.set()
        await polling
    return Answer(status, seconds, worst * 1000)


# --- the API's settings ------------------------------------------------------------------------


def api_env(base: dict[str, str], endpoint: str, port: int, state: Path) -> dict[str, str]:
    return {
        **ingest_env(base, endpoint, port, state, STREAM),
        "INGEST_MAX_BODY_BYTES": str(MAX_BODY),
        "INGEST_MAX_RECORDS_PER_REQUEST": str(MAX_RECORDS),
    }


@contextlib.contextmanager
def source_tree(commit: str) -> Iterator[Path]:
    """A temporary git worktree of ``commit`` (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="body-bench-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), commit],
            check=True,
            capture_output=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                check=False,
                capture_output=True,
            )


def run(args: argparse.Namespace, baseline_tree: Path | None) -> list[list[str]]:
    os.environ.update(FAKE_AWS)
    env = dict(os.environ)
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="body-bench-") as tmp:
        state = Path(tmp)
        try:
            moto_port = free_port()
            processes.append(
                start(
                    [
                        sys.executable,
                        "-m",
                        "cardstream.local.moto_server",
                        "--port",
                        str(moto_port),
                    ],
                    env,
                    moto_port,
                    state / "moto.log",
                )
            )
            endpoint = f"http://127.0.0.1:{moto_port}"
            kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name=REGION)
            kinesis.create_stream(StreamName=STREAM, ShardCount=2)
            kinesis.get_waiter("stream_exists").wait(StreamName=STREAM)
            token = prepare_merchant(endpoint, state)
            apis: dict[str, str] = {}
            trees: dict[str, Path | None] = {"ingest-api": None, "baseline": baseline_tree}
            for name, tree in trees.items():
                if name == "baseline" and tree is None:
                    continue
                port = free_port()
                process_env = api_env(env, endpoint, port, state)
                if tree is not None:
                    # The baseline's own members first: its ingest-api with the shared and
                    # monitoring code it was written against.
                    source = [tree / "shared/src", tree / "services/ingest-api/src"]
                    source += [p for p in [tree / "monitoring/src"] if p.is_dir()]
                    process_env["PYTHONPATH"] = os.pathsep.join(map(str, source))
                processes.append(
                    start(
                        [sys.executable, "-m", "ingest_api"],
                        process_env,
                        port,
                        state / f"{name}.log",
                    )
                )
                apis[name] = f"http://127.0.0.1:{port}"
            rows = []
            for form, case, media_type, body in bodies():
                row = [form, case, f"{len(body) / 1024 / 1024:.1f}"]
                for api in apis.values():
                    result = asyncio.run(answer(api, token, media_type, body))
                    row += [
                        str(result.status),
                        f"{result.seconds:.2f}",
                        f"{result.healthz_worst_ms:.0f}",
                    ]
                print(" | ".join(row), file=sys.stderr, flush=True)
                rows.append(row)
            return rows
        finally:
            for process in reversed(processes):
                stop(process)


def table(rows: list[list[str]], with_baseline: bool) -> str:
    header = ["format", "body", "MiB", "status", "answer s", "/healthz worst ms"]
    if with_baseline:
        header += ["baseline status", "baseline answer s", "baseline /healthz worst ms"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--baseline-commit",
        default="7e620b4",
        help="commit whose ingest-api is the same-run baseline (default: before bounded reading)",
    )
    parser.add_argument("--skip-baseline", action="store_true", help="measure this tree only")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        tree = (
            None if args.skip_baseline else stack.enter_context(source_tree(args.baseline_commit))
        )
        rows = run(args, tree)
    load_after = os.getloadavg()
    print(f"body limits benchmark, {started}; max body {MAX_BODY} bytes, max {MAX_RECORDS} records")
    print(
        f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} "
        f"(1 min) on {os.cpu_count()} CPUs"
    )
    print(table(rows, tree is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
