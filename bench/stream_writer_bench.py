"""Benchmark of the stream-writer as a real process against a single-threaded moto server.

Prints two figures (it never fails on time):

* throughput: records written to S3 per CPU-second of the writer process, measured while it
  drains a burst of records (user + system CPU time of the process, from psutil);
* added latency at a fixed rate: for each record, the S3 event time of the object holding it
  minus the record's ApproximateArrivalTimestamp in Kinesis, p50 / p99 / max.

Baseline in the same run: the original design's consumer shape, a Lambda invoked with
batches of 5 records (the event source mapping's batch size) that decodes each record and
writes one object per batch. It runs as its own process on an equal backlog in a stream of
its own; its records per CPU-second count the poller's reads and every invocation (the
event each would receive, built from the records as Lambda's poller does).

    .venv/bin/python bench/stream_writer_bench.py --records 40000 --rate 500 --seconds 20
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any
from urllib.parse import unquote_plus

import boto3
import httpx
import msgspec
import psutil

from cardstream.local.aws_resources import create_all
from cardstream.local.ports import free_port, wait_for_port
from cardstream_shared.contract import StreamEnvelope, TransactionIn, kaggle_example
from cardstream_shared.pan import PanKeyring, luhn_valid

REGION = "us-east-1"


def card_numbers(count: int) -> list[str]:
    """Luhn-valid 16-digit test card numbers."""
    cards = []
    for i in range(count):
        body = f"4{i:014d}"
        cards.append(next(body + str(d) for d in range(10) if luhn_valid(body + str(d))))
    return cards


def envelopes(start: int, count: int, cards: list[str], ring: PanKeyring) -> list[dict[str, Any]]:
    """PutRecords entries of valid envelopes, partition key = card token."""
    base = kaggle_example()
    tokens = {pan: ring.tokenize(pan) for pan in cards}
    entries = []
    now = dt.datetime.now(dt.UTC)
    for i in range(start, start + count):
        pan = cards[i % len(cards)]
        txn = TransactionIn.model_validate({**base, "trans_num": f"b{i:010d}", "cc_num": pan})
        env = StreamEnvelope.from_transaction(txn, tokens[pan], client_id="bench", received_at=now)
        entries.append({"Data": env.to_json_bytes(), "PartitionKey": env.card_token})
    return entries


def put(kinesis: Any, stream: str, entries: list[dict[str, Any]]) -> None:
    for i in range(0, len(entries), 500):
        chunk = entries[i : i + 500]
        while chunk:
            result = kinesis.put_records(StreamName=stream, Records=chunk)
            chunk = [
                entry
                for entry, outcome in zip(chunk, result["Records"], strict=True)
                if "ErrorCode" in outcome
            ]


def records_out(health_url: str) -> int:
    text = httpx.get(f"{health_url}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith('cardstream_writer_records_out_total{destination="raw"}'):
            return int(float(line.split()[-1]))
    return 0


def wait_written(health_url: str, expected: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while records_out(health_url) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"writer did not write {expected} records in {timeout_s}s")
        time.sleep(0.2)


LAMBDA_BATCH = 5


def lambda_baseline(endpoint: str, stream: str, bucket: str, expected: int) -> None:
    """The original consumer: one invocation per 5 records, one object per invocation.

    Prints ``records cpu_seconds`` (this process, from the first read to the last object).
    """
    import base64

    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name=REGION)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)

    def handler(event: dict[str, Any], invocation: int) -> None:
        lines = [
            json.dumps(json.loads(base64.b64decode(item["kinesis"]["data"])))
            for item in event["Records"]
        ]
        s3.put_object(
            Bucket=bucket, Key=f"lambda/{invocation:09d}.json", Body="\n".join(lines).encode()
        )

    started = time.process_time()
    done = invocation = 0
    iterators = [
        kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for shard in kinesis.list_shards(StreamName=stream)["Shards"]
    ]
    while done < expected:
        for index, iterator in enumerate(iterators):
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            iterators[index] = page["NextShardIterator"]
            records = page["Records"]
            for start in range(0, len(records), LAMBDA_BATCH):
                event = {
                    "Records": [
                        {
                            "kinesis": {
                                "data": base64.b64encode(record["Data"]).decode(),
                                "partitionKey": record["PartitionKey"],
                                "sequenceNumber": record["SequenceNumber"],
                            }
                        }
                        for record in records[start : start + LAMBDA_BATCH]
                    ]
                }
                handler(json.loads(json.dumps(event)), invocation)
                invocation += 1
            done += len(records)
    print(done, time.process_time() - started)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=40_000, help="burst for throughput")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--rate", type=int, default=500, help="records/s in the latency phase")
    parser.add_argument("--seconds", type=int, default=20, help="length of the latency phase")
    parser.add_argument("--flush-age", type=float, default=2.0)
    parser.add_argument("--poll", type=float, default=0.25)
    parser.add_argument("--gzip-level", type=int, default=3)
    parser.add_argument("--lambda-baseline", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lambda_baseline:
        endpoint, stream, bucket, expected = args.lambda_baseline
        lambda_baseline(endpoint, stream, bucket, int(expected))
        return

    moto_port, health_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    moto = subprocess.Popen(
        [sys.executable, "-m", "cardstream.local.moto_server", "--port", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    writer: subprocess.Popen[bytes] | None = None
    try:
        wait_for_port("127.0.0.1", moto_port, timeout_s=60, alive=lambda: moto.poll() is None)
        clients: dict[str, Any] = {
            name: boto3.client(name, endpoint_url=endpoint, region_name=REGION)
            for name in ("kinesis", "s3", "sqs", "dynamodb")
        }
        resources = create_all(clients, region=REGION, shards=args.shards)
        ring = PanKeyring({"bench": os.urandom(32)}, "bench")
        cards = card_numbers(200)
        paced = envelopes(0, args.rate * args.seconds, cards, ring)
        burst = envelopes(len(paced), args.records, cards, ring)

        def start_writer() -> subprocess.Popen[bytes]:
            process = subprocess.Popen(
                [sys.executable, "-m", "stream_writer"],
                env={
                    **env,
                    "WRITER_ENVIRONMENT": "local",
                    "WRITER_AWS_ENDPOINT_URL": endpoint,
                    "WRITER_WORKER_ID": "bench",
                    "WRITER_BUCKET": resources.landing_bucket,
                    "WRITER_HEALTH_PORT": str(health_port),
                    "WRITER_FLUSH_MAX_AGE_S": str(args.flush_age),
                    "WRITER_POLL_INTERVAL_S": str(args.poll),
                    "WRITER_GZIP_LEVEL": str(args.gzip_level),
                    "WRITER_LOG_LEVEL": "WARNING",
                },
            )
            wait_for_port(
                "127.0.0.1", health_port, timeout_s=60, alive=lambda: process.poll() is None
            )
            return process

        health = f"http://127.0.0.1:{health_port}"
        writer = start_writer()
        deadline = time.monotonic() + 30
        while len(httpx.get(f"{health}/healthz").json()["leases"]) < args.shards:
            if time.monotonic() > deadline:
                raise TimeoutError("writer did not take every lease")
            time.sleep(0.2)

        # Latency first, on a fresh stream. One PutRecords every 100 ms.
        per_tick = max(1, args.rate // 10)
        tick_start = time.monotonic()
        for index in range(0, len(paced), per_tick):
            put(clients["kinesis"], resources.stream_name, paced[index : index + per_tick])
            next_tick = tick_start + (index // per_tick + 1) * 0.1
            time.sleep(max(0.0, next_tick - time.monotonic()))
        wait_written(health, len(paced), timeout_s=120)
        writer.send_signal(signal.SIGTERM)
        exit_codes = [writer.wait(60)]

        # Throughput: a backlog waits in the stream (moto ingests far slower than Kinesis, so
        # records arriving while the writer reads would measure moto); a new writer process
        # drains it from the checkpoints. Its CPU time (user + system) counts from the moment
        # its health port is up (imports done) until the backlog is in S3.
        put(clients["kinesis"], resources.stream_name, burst)
        writer = start_writer()
        process = psutil.Process(writer.pid)
        before = process.cpu_times()
        started = time.monotonic()
        wait_written(health, args.records, timeout_s=600)
        after = process.cpu_times()
        cpu = (after.user - before.user) + (after.system - before.system)
        wall = time.monotonic() - started
        writer.send_signal(signal.SIGTERM)
        exit_codes.append(writer.wait(60))

        # Baseline: the same backlog in a stream of its own, drained by the Lambda shape.
        baseline_stream, baseline_bucket = "bench-lambda-baseline", "bench-lambda-baseline"
        clients["kinesis"].create_stream(StreamName=baseline_stream, ShardCount=args.shards)
        clients["kinesis"].get_waiter("stream_exists").wait(StreamName=baseline_stream)
        clients["s3"].create_bucket(Bucket=baseline_bucket)
        put(clients["kinesis"], baseline_stream, burst)
        baseline = subprocess.run(
            [
                sys.executable,
                __file__,
                "--lambda-baseline",
                endpoint,
                baseline_stream,
                baseline_bucket,
                str(args.records),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        baseline_records, baseline_cpu = baseline.stdout.split()

        arrivals: dict[str, dt.datetime] = {}
        kinesis = clients["kinesis"]
        for shard in kinesis.list_shards(StreamName=resources.stream_name)["Shards"]:
            iterator = kinesis.get_shard_iterator(
                StreamName=resources.stream_name,
                ShardId=shard["ShardId"],
                ShardIteratorType="TRIM_HORIZON",
            )["ShardIterator"]
            while iterator:
                page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
                for record in page["Records"]:
                    trans_num = msgspec.json.decode(record["Data"])["trans_num"]
                    arrivals[trans_num] = record["ApproximateArrivalTimestamp"]
                iterator = page["NextShardIterator"] if page["Records"] else None

        written_at: dict[str, dt.datetime] = {}
        sqs = clients["sqs"]
        while True:
            messages = sqs.receive_message(
                QueueUrl=resources.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                break
            for message in messages:
                for event in json.loads(message["Body"]).get("Records", []):
                    # S3 event keys are URL-encoded ("=" arrives as "%3D").
                    key = unquote_plus(event["s3"]["object"]["key"])
                    written_at[key] = dt.datetime.fromisoformat(event["eventTime"])
                sqs.delete_message(
                    QueueUrl=resources.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        paced_ids = {msgspec.json.decode(entry["Data"])["trans_num"] for entry in paced}
        latencies = []
        for key, at in written_at.items():
            body = clients["s3"].get_object(Bucket=resources.landing_bucket, Key=key)["Body"]
            for line in gzip.decompress(body.read()).splitlines():
                trans_num = msgspec.json.decode(line)["trans_num"]
                if trans_num in paced_ids:
                    latencies.append((at - arrivals[trans_num]).total_seconds())

        print(f"writer exit codes after SIGTERM: {exit_codes}")
        print(
            f"throughput: {args.records} records in {wall:.1f} s wall, {cpu:.2f} CPU-s "
            f"-> {args.records / cpu:,.0f} records per CPU-second"
        )
        print(
            f"baseline (Lambda shape, {LAMBDA_BATCH} records per invocation, one object each): "
            f"{baseline_records} records, {float(baseline_cpu):.2f} CPU-s -> "
            f"{int(baseline_records) / float(baseline_cpu):,.0f} records per CPU-second "
            f"({args.records / cpu / (int(baseline_records) / float(baseline_cpu)):.1f}x)"
        )
        print(f"load average: {os.getloadavg()}")
        print(
            f"added latency at {args.rate} records/s over {args.seconds} s "
            f"({len(latencies)} records; flush age {args.flush_age} s, poll {args.poll} s): "
            f"p50 {statistics.median(latencies):.3f} s, p99 {percentile(latencies, 0.99):.3f} s, "
            f"max {max(latencies):.3f} s"
        )
    finally:
        for child in (writer, moto):
            if child is not None and child.poll() is None:
                child.terminate()
                child.wait(30)


if __name__ == "__main__":
    main()
