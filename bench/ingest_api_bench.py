"""Benchmark of ingest-api against a baseline shaped like the original design.

Starts the local stack's moto server (``cardstream.local.moto_server``), the real
ingest-api (``python -m ingest_api``) and, from this same script, a baseline server: a
synchronous handler that validates, tokenizes and calls Kinesis ``PutRecord`` once per
record (the original Lambda's shape; its authorizer
cached decisions for 5 minutes, so the baseline does no token verification at all).

For single-record and batch traffic it prints, for both servers:
- records per CPU-second of the server process (psutil ``cpu_times`` of that pid, user +
  system), under a closed-loop load as fast as the server answers;
- p50/p99 latency under an open-loop load at a fixed offered rate, measured from each
  request's scheduled send time (so a stalled server cannot hide its queue).

Every measurement starts from a freshly created stream, so that each sees the same
emulator. Run: ``.venv/bin/python bench/ingest_api_bench.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import psutil
from ingest_bench_setup import FAKE_AWS, REGION, ingest_env, prepare_merchant, start, stop

from cardstream.local.ports import free_port
from cardstream_shared import resource_names as names
from cardstream_shared.contract import kaggle_example
from cardstream_shared.pan import PanKeyring

STREAM = "bench-transactions"
PANS = ["2703186189652095", "4613314721966", "3598215285024754", "6011438889172900"]


# --- the baseline server (run by this script in a child process) -----------------------------


def serve_baseline(port: int, endpoint: str) -> None:
    """A synchronous FastAPI handler calling PutRecord once per record."""
    import uvicorn
    from fastapi import Body, FastAPI

    from cardstream_shared.contract import StreamEnvelope, TransactionIn

    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name=REGION)
    secrets = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=REGION)
    keyring = PanKeyring.from_secret_string(
        secrets.get_secret_value(SecretId=names.PAN_KEY_SECRET)["SecretString"]
    )
    app = FastAPI()

    def put(data: dict[str, Any]) -> dict[str, str]:
        txn = TransactionIn.model_validate(data)
        card = keyring.tokenize(txn.cc_num)
        envelope = StreamEnvelope.from_transaction(
            txn, card, client_id="baseline", received_at=dt.datetime.now(dt.UTC)
        )
        answer = kinesis.put_record(
            StreamName=STREAM, Data=envelope.to_json_bytes(), PartitionKey=card.token
        )
        return {"trans_num": txn.trans_num, "sequence_number": answer["SequenceNumber"]}

    @app.post("/v1/transactions", status_code=202)
    def single(data: dict[str, Any] = Body()) -> dict[str, str]:  # noqa: B008
        return put(data)

    @app.post("/v1/transactions/batch")
    def batch(data: list[dict[str, Any]] = Body()) -> list[dict[str, str]]:  # noqa: B008
        return [put(item) for item in data]

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- load generation ------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)


@dataclass
class Figures:
    records: int
    cpu_s: float
    wall_s: float
    errors: int

    @property
    def per_cpu_s(self) -> float:
        return self.records / self.cpu_s if self.cpu_s else float("nan")


def make_rows(prefix: str, count: int) -> list[dict[str, Any]]:
    base = kaggle_example()
    return [
        {**base, "trans_num": f"{prefix}{i:012d}", "cc_num": PANS[i % len(PANS)]}
        for i in range(count)
    ]


def fresh_stream(endpoint: str, shards: int) -> None:
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name=REGION)
    try:
        kinesis.delete_stream(StreamName=STREAM, EnforceConsumerDeletion=True)
        kinesis.get_waiter("stream_not_exists").wait(
            StreamName=STREAM, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50}
        )
    except kinesis.exceptions.ResourceNotFoundException:
        pass
    kinesis.create_stream(StreamName=STREAM, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=STREAM, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50}
    )


async def post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> int:
    async with session.post(url, data=body, headers=headers) as response:
        await response.read()
        return response.status


async def closed_loop(
    server: Server,
    bodies: list[bytes],
    path: str,
    headers: dict[str, str],
    *,
    concurrency: int,
    records_per_body: int,
    ok_status: int,
) -> Figures:
    """Send every body with ``concurrency`` requests outstanding; CPU of the server."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = list(reversed(bodies))
        errors = 0

        async def worker() -> None:
            nonlocal errors
            while queue:
                status = await post(session, server.url + path, queue.pop(), headers)
                errors += status != ok_status

        cpu0, wall0 = server.cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu1, wall1 = server.cpu_seconds(), time.perf_counter()
    return Figures(len(bodies) * records_per_body, cpu1 - cpu0, wall1 - wall0, errors)


async def open_loop(
    server: Server,
    bodies: list[bytes],
    path: str,
    headers: dict[str, str],
    *,
    rate: float,
    ok_status: int,
) -> tuple[float, float, int]:
    """p50 and p99 latency (ms) with requests sent at ``rate`` per second, and errors."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=2000)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: bytes, scheduled: float) -> None:
            nonlocal errors
            status = await post(session, server.url + path, body, headers)
            latencies.append(loop.time() - scheduled)
            errors += status != ok_status

        tasks = []
        start = loop.time() + 0.05
        for i, body in enumerate(bodies):
            scheduled = start + i / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(body, scheduled)))
        await asyncio.gather(*tasks)
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return p50, p99, errors


# --- orchestration ---------------------------------------------------------------------------


def start_server(name: str, args: list[str], env: dict[str, str], port: int, log: Path) -> Server:
    return Server(name, f"http://127.0.0.1:{port}", start(args, env, port, log))


async def measure(
    server: Server, endpoint: str, args: argparse.Namespace, token: str, run: str
) -> dict[str, Any]:
    json_headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    baseline = server.name == "baseline"
    scale = args.baseline_scale if baseline else 1.0
    results: dict[str, Any] = {}

    # Warm-up: imports, connection pools, the token cache.
    fresh_stream(endpoint, args.shards)
    warm = [json.dumps(r).encode() for r in make_rows(f"{run}w", 200)]
    await closed_loop(
        server,
        warm,
        "/v1/transactions",
        json_headers,
        concurrency=8,
        records_per_body=1,
        ok_status=202,
    )

    fresh_stream(endpoint, args.shards)
    count = max(100, int(args.single_requests * scale))
    bodies = [json.dumps(r).encode() for r in make_rows(f"{run}s", count)]
    results["single"] = await closed_loop(
        server,
        bodies,
        "/v1/transactions",
        json_headers,
        concurrency=args.concurrency,
        records_per_body=1,
        ok_status=202,
    )

    fresh_stream(endpoint, args.shards)
    batch_count = max(2, int(args.batches * scale))
    rows = make_rows(f"{run}b", batch_count * args.batch_size)
    batch_bodies = [
        json.dumps(rows[i : i + args.batch_size]).encode()
        for i in range(0, len(rows), args.batch_size)
    ]
    results["batch"] = await closed_loop(
        server,
        batch_bodies,
        "/v1/transactions/batch",
        json_headers,
        concurrency=args.batch_concurrency,
        records_per_body=args.batch_size,
        ok_status=200,
    )

    fresh_stream(endpoint, args.shards)
    lat_bodies = [
        json.dumps(r).encode() for r in make_rows(f"{run}l", int(args.rate * args.latency_seconds))
    ]
    results["single_latency"] = await open_loop(
        server, lat_bodies, "/v1/transactions", json_headers, rate=args.rate, ok_status=202
    )

    fresh_stream(endpoint, args.shards)
    lat_rows = make_rows(f"{run}m", int(args.batch_rate * args.latency_seconds) * 100)
    lat_batches = [json.dumps(lat_rows[i : i + 100]).encode() for i in range(0, len(lat_rows), 100)]
    results["batch_latency"] = await open_loop(
        server,
        lat_batches,
        "/v1/transactions/batch",
        json_headers,
        rate=args.batch_rate,
        ok_status=200,
    )
    return results


def report(ours: dict[str, Any], base: dict[str, Any], args: argparse.Namespace) -> str:
    lines = []
    for kind, label in (("single", "single-record requests"), ("batch", "batched records")):
        o, b = ours[kind], base[kind]
        lines.append(
            f"{label:24} ingest-api {o.per_cpu_s:9,.0f} rec/CPU-s ({o.records} rec, "
            f"{o.cpu_s:.2f} CPU-s, {o.wall_s:.1f} s wall, {o.errors} errors) | baseline "
            f"{b.per_cpu_s:7,.0f} rec/CPU-s ({b.records} rec, {b.errors} errors) | ratio "
            f"{o.per_cpu_s / b.per_cpu_s:5.1f}x"
        )
    for kind, label in (
        ("single_latency", f"single @ {args.rate:g} req/s"),
        ("batch_latency", f"batch(100) @ {args.batch_rate:g} req/s"),
    ):
        (op50, op99, oerr), (bp50, bp99, berr) = ours[kind], base[kind]
        lines.append(
            f"{label:24} ingest-api p50 {op50:7.1f} ms p99 {op99:7.1f} ms ({oerr} errors) | "
            f"baseline p50 {bp50:8.1f} ms p99 {bp99:8.1f} ms ({berr} errors)"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--single-requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    # 100 batches of 500: about a CPU-second, so the 10 ms ticks of the CPU clock are 1%.
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--batch-concurrency", type=int, default=4)
    parser.add_argument("--rate", type=float, default=500.0, help="single requests/s offered")
    parser.add_argument("--batch-rate", type=float, default=10.0, help="batches/s offered")
    parser.add_argument("--latency-seconds", type=float, default=8.0)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument(
        "--baseline-scale",
        type=float,
        default=0.2,
        help="fraction of the closed-loop volume sent to the (slow) baseline",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline, args.endpoint)
        return 0

    os.environ.update(FAKE_AWS)
    env = dict(os.environ)
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        state = Path(tmp)
        try:
            moto_port = free_port()
            moto = start_server(
                "moto",
                [sys.executable, "-m", "cardstream.local.moto_server", "--port", str(moto_port)],
                env,
                moto_port,
                state / "moto.log",
            )
            processes.append(moto.process)
            endpoint = moto.url
            fresh_stream(endpoint, args.shards)
            token = prepare_merchant(endpoint, state)
            api_port = free_port()
            api_env = ingest_env(env, endpoint, api_port, state, STREAM)
            api = start_server(
                "ingest-api",
                [sys.executable, "-m", "ingest_api"],
                api_env,
                api_port,
                state / "api.log",
            )
            processes.append(api.process)
            base_port = free_port()
            base = start_server(
                "baseline",
                [
                    sys.executable,
                    __file__,
                    "--serve-baseline",
                    str(base_port),
                    "--endpoint",
                    endpoint,
                ],
                env,
                base_port,
                state / "baseline.log",
            )
            processes.append(base.process)
            ours = asyncio.run(measure(api, endpoint, args, token, "a"))
            theirs = asyncio.run(measure(base, endpoint, args, token, "z"))
        finally:
            for process in reversed(processes):
                stop(process)
        text = report(ours, theirs, args)
        print(text)
        print(f"load average: {os.getloadavg()} on {os.cpu_count()} CPUs")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "ingest_api": {k: getattr(v, "__dict__", v) for k, v in ours.items()},
                        "baseline": {k: getattr(v, "__dict__", v) for k, v in theirs.items()},
                    },
                    indent=2,
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
