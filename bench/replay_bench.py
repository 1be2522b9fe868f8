"""Benchmark of the data generator and of the replay client's own ceiling.

Prints:
- generator throughput (rows per second, one process) for ``--rows`` rows;
- replay throughput against a no-op API (a separate uvicorn process that answers every
  batch "all accepted" without looking at the records), for several batch sizes, with the
  client's CPU seconds per 10,000 records. This is the most the client can offer; the real
  pipeline's figure is the ingest-api's, measured by ``bench/ingest_api_bench.py``.

Baseline in the same run, for each batch size: the client a merchant would write first, a
loop that reads the file with ``csv``, posts each batch with a synchronous ``httpx.Client``
and waits for the answer before the next (no requests in flight together, no pacing, no
resending). What the replay client adds over it (concurrent requests, streaming, the 503 and
429 handling) must not cost throughput.

Run: ``.venv/bin/python bench/replay_bench.py [--rows 100000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from cardstream.generator import write_csv
from cardstream.local.ports import free_port, wait_for_port
from cardstream.replay import replay_file


async def _noop_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    kind = dict(scope["headers"]).get(b"content-type", b"")
    lines = [line for line in body.split(b"\n") if line.strip()]
    count = len(lines) - 1 if kind == b"text/csv" else len(lines)
    results = [{"index": i, "status": "accepted"} for i in range(count)]
    payload = json.dumps({"accepted": count, "rejected": 0, "results": results}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def plain_loop(path: Path, url: str, batch: int) -> int:
    """The baseline: post ``batch`` rows at a time, one request after another."""
    posted = 0
    with path.open(newline="", encoding="utf-8") as handle, httpx.Client(base_url=url) as client:
        reader = csv.reader(handle)
        header = next(reader)
        single = batch == 1
        chunk: list[list[str]] = []
        for values in reader:
            chunk.append(values)
            if len(chunk) < batch:
                continue
            if single:
                body = json.dumps(dict(zip(header[1:], values[1:], strict=True))).encode()
                kind = "application/json"
            else:
                buffer = io.StringIO()
                csv.writer(buffer, lineterminator="\n").writerows([header, *chunk])
                body, kind = buffer.getvalue().encode(), "text/csv"
            client.post(
                "/v1/transactions" if single else "/v1/transactions/batch",
                content=body,
                headers={"Content-Type": kind, "Authorization": "Bearer x"},
            ).raise_for_status()
            posted += len(chunk)
            chunk = []
    return posted


def _serve(port: int) -> None:
    import uvicorn

    uvicorn.run(_noop_app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "replay.csv"
        started = time.perf_counter()
        write_csv(path, args.rows, seed=1)
        elapsed = time.perf_counter() - started
        print(
            f"generate: {args.rows:,} rows in {elapsed:.2f} s = {args.rows / elapsed:,.0f} rows/s"
        )
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
        try:
            wait_for_port("127.0.0.1", port, timeout_s=30, alive=lambda: server.poll() is None)
            print(f"load average: {os.getloadavg()}")
            me = psutil.Process()
            for batch in (1, 100, 500):
                rows = min(args.rows, 5_000) if batch == 1 else args.rows
                if rows < args.rows:
                    write_csv(path, rows, seed=1)
                cpu = sum(me.cpu_times()[:2])
                summary = asyncio.run(
                    replay_file(
                        path,
                        url=f"http://127.0.0.1:{port}",
                        token="x",
                        rate=0,
                        batch=batch,
                        collect_trans_nums=False,
                    )
                )
                used = sum(me.cpu_times()[:2]) - cpu
                print(
                    f"replay batch={batch:>3}: {summary.accepted:,} records in "
                    f"{summary.elapsed_s:.2f} s = {summary.throughput:,.0f} records/s; client "
                    f"{used / summary.accepted * 10_000:.2f} CPU-s per 10,000 records"
                )
                cpu, wall = sum(me.cpu_times()[:2]), time.perf_counter()
                posted = plain_loop(path, f"http://127.0.0.1:{port}", batch)
                wall, used = time.perf_counter() - wall, sum(me.cpu_times()[:2]) - cpu
                print(
                    f"  baseline loop:   {posted:,} records in {wall:.2f} s = "
                    f"{posted / wall:,.0f} records/s; client "
                    f"{used / posted * 10_000:.2f} CPU-s per 10,000 records"
                )
                if rows < args.rows:
                    write_csv(path, args.rows, seed=1)
        finally:
            server.terminate()
            server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
