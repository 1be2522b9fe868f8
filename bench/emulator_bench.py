"""Benchmark of the local emulator's Kinesis: write and read throughput by stream length.

Two moto servers run side by side (``cardstream.local.moto_server``: waitress, one worker):
the emulator as the local stack runs it (``cardstream``: the record store of
``moto_kinesis_store`` and the request path of ``moto_dispatch``) and as it ran before
(``moto``: moto's own store and request path, the baseline). For each stream length (records
already in the one-shard stream) it prints, for both:

- write: ``--records`` records put with PutRecords of ``--batch`` records, records/s and
  records per CPU-second of the server process (psutil, user + system);
- small writes: the same with PutRecords of 10 records (one 10-record API request each);
- read: all those records read back with GetRecords (Limit 10,000) from an
  ``AFTER_SEQUENCE_NUMBER`` iterator at the last record put before, records/s.

moto's put costs time in proportion to the shard's length, so filling its stream to a
million records would take hours: lengths above ``--moto-max-length`` are measured with the
cardstream emulator only, and the bench prints how long moto would need to fill them,
extrapolated from its longest fill (the fill time grows with the square of the length).
It never fails on time.

    .venv/bin/python bench/emulator_bench.py [--lengths 0,100000,1000000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
import psutil
from botocore.config import Config

from cardstream.local.ports import free_port, wait_for_port

REGION = "us-east-1"
SERVE = (
    "from cardstream.local.moto_server import serve; "
    "serve('127.0.0.1', {port}, baseline={baseline})"
)


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    kinesis: Any

    def cpu(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)


@dataclass(frozen=True)
class Phase:
    records: int
    seconds: float
    cpu: float

    def line(self) -> str:
        per_cpu = f"{self.records / self.cpu:>9,.0f}" if self.cpu > 0 else "        -"
        return f"{self.records / self.seconds:>9,.0f} rec/s {per_cpu} rec/CPU-s"


def start_server(name: str, baseline: bool) -> Server:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE.format(port=port, baseline=baseline)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port("127.0.0.1", port, timeout_s=60, alive=lambda: process.poll() is None)
    kinesis = boto3.client(
        "kinesis",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}, read_timeout=600),
    )
    return Server(name, process, kinesis)


def entries(count: int, size: int, salt: str) -> list[dict[str, Any]]:
    payload = os.urandom(size // 2).hex().encode()
    return [{"Data": payload, "PartitionKey": f"{salt}{i:058x}"[:64]} for i in range(count)]


def put(server: Server, stream: str, records: list[dict[str, Any]], batch: int) -> str | None:
    """Put every record; the last sequence number."""
    last = None
    for start in range(0, len(records), batch):
        answer = server.kinesis.put_records(
            StreamName=stream, Records=records[start : start + batch]
        )
        if answer["FailedRecordCount"]:
            raise RuntimeError(f"{server.name}: {answer['FailedRecordCount']} records refused")
        last = answer["Records"][-1]["SequenceNumber"]
    return last


def timed(server: Server, action: Any, records: int) -> Phase:
    cpu, wall = server.cpu(), time.perf_counter()
    action()
    return Phase(records, time.perf_counter() - wall, server.cpu() - cpu)


def read_after(server: Server, stream: str, shard: str, after: str | None, count: int) -> None:
    kwargs: dict[str, Any] = (
        {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
        if after
        else {"ShardIteratorType": "TRIM_HORIZON"}
    )
    iterator = server.kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, **kwargs)[
        "ShardIterator"
    ]
    read = 0
    while read < count:
        answer = server.kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        read += len(answer["Records"])
        iterator = answer["NextShardIterator"]
    if read != count:
        raise RuntimeError(f"{server.name}: read {read} records, expected {count}")


def measure(
    server: Server, length: int, args: argparse.Namespace
) -> tuple[float, tuple[Phase, ...]]:
    """Seconds to fill the stream to ``length``; the write, small-write and read phases."""
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    server.kinesis.create_stream(StreamName=stream, ShardCount=1)
    shard = server.kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    fill_batch = entries(500, args.record_bytes, "f")
    last: str | None = None
    fill = time.perf_counter()
    for start in range(0, length, 500):
        last = put(server, stream, fill_batch[: min(500, length - start)], 500)
    fill = time.perf_counter() - fill
    if length:
        print(f"  {server.name}: filled {length:,} records in {fill:.1f}s", flush=True)
    big = entries(args.records, args.record_bytes, "w")
    small = entries(args.small_records, args.record_bytes, "s")
    write = timed(server, lambda: put(server, stream, big, args.batch), len(big))
    write_small = timed(server, lambda: put(server, stream, small, 10), len(small))
    written = len(big) + len(small)
    read = timed(server, lambda: read_after(server, stream, shard, last, written), written)
    server.kinesis.delete_stream(StreamName=stream)
    return fill, (write, write_small, read)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lengths", default="0,100000,1000000")
    parser.add_argument("--moto-max-length", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=20_000, help="records written and read")
    parser.add_argument("--small-records", type=int, default=5_000, help="in 10-record puts")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--record-bytes", type=int, default=700)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    lengths = [int(item) for item in args.lengths.split(",")]
    print(f"load average at start: {os.getloadavg()}")
    servers = [start_server("cardstream", baseline=False), start_server("moto", baseline=True)]
    try:
        rows: list[tuple[int, str, tuple[Phase, ...] | str]] = []
        longest_moto_fill = (0, 0.0)
        for length in lengths:
            for server in servers:
                if server.name == "moto" and length > args.moto_max_length:
                    filled, seconds = longest_moto_fill
                    guess = seconds * (length / filled) ** 2 / 3600 if filled else float("nan")
                    rows.append(
                        (length, server.name, f"not run: filling would take ~{guess:.1f} h")
                    )
                    continue
                fill, phases = measure(server, length, args)
                if server.name == "moto" and length:
                    longest_moto_fill = max(longest_moto_fill, (length, fill))
                rows.append((length, server.name, phases))
        print(
            f"\nKinesis in the emulator, one shard, {args.record_bytes}-byte records, "
            f"{args.records:,} written in PutRecords of {args.batch}, "
            f"{args.small_records:,} in PutRecords of 10, all read back"
        )
        print(f"{'length':>10} {'emulator':<10} {'write':<32} {'write, 10 a call':<32} read")
        for length, name, result in rows:
            cells = (
                result if isinstance(result, str) else " ".join(f"{p.line():<32}" for p in result)
            )
            print(f"{length:>10,} {name:<10} {cells}")
    finally:
        for server in servers:
            server.process.terminate()
            server.process.wait(30)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
