"""Chaos soak (F12): the local stack under steady load while parts of it fail, then its promises.

Starts its own local stack (``cardstream.local.stack``, the code ``cardstream up`` runs) with
2 ingest-api instances, 4 shards, 2 stream-writers and 2 db-loaders, the services reaching
the AWS emulator through ``cardstream.local.fault_proxy``. It replays generated rows through
the API with the replay client (``cardstream.replay``: it resends what a 503 names and fails
over between the API instances) at ``--rate`` records/s for ``--minutes``, and injects one
fault every ``--fault-every`` seconds from a schedule drawn from ``--seed`` (each kind once
per round, in a shuffled order; the seed is printed so a failing run can be replayed):

- ``writer-kill``: SIGKILL of a stream-writer, started again after ``RESTART_AFTER_S`` (as
  ECS replaces a stopped task; ``cardstream up`` itself restarts nothing);
- ``writer-pause``: SIGSTOP of a stream-writer for ``PAUSE_S`` (longer than the lease
  failover), then SIGCONT: its shards move and it comes back a fenced zombie;
- ``loader-kill``: SIGKILL of a db-loader (its messages come back after their visibility
  timeout), started again after ``RESTART_AFTER_S``;
- ``postgres-restart``: PostgreSQL stopped (fast shutdown) and started again;
- ``api-kill``: SIGKILL of an ingest-api instance with requests in flight (the client fails
  over to the other), started again after ``RESTART_AFTER_S``;
- ``kinesis-throttle``: for ``BURST_S``, a fraction of PutRecords/GetRecords answered
  ProvisionedThroughputExceededException;
- ``s3-errors``: for ``BURST_S``, a fraction of S3 PUT/GET answered 503 SlowDown or 500
  InternalError (half the failed puts after the object was stored);
- ``reshard``: a split of the busiest-looking open shard, or a merge of two adjacent ones
  (alternately, around 4 open shards);
- ``poison``: an object under ``raw/`` that is not gzip, which the loader must send to the DLQ.

At the end it waits for the pipeline to drain and checks, printing a table of the faults
and one of the invariants:

- every record the API acknowledged is in PostgreSQL exactly once, and the replay finished
  every record (nothing left unanswered);
- every record a 503 named as not accepted was resent, acknowledged and loaded;
- the DLQ holds exactly the poisoned objects;
- no card's records were written out of order: the landed objects taken in the order S3
  acknowledged them (the proxy's journal), each card's records follow the stream's order
  (by shard lineage, then sequence number);
- resident memory and open file descriptors of every service process stay bounded after
  their warm-up (the emulator and PostgreSQL hold the run's data: their memory is shown,
  not bounded).

Exit status 1 when an invariant breaks; never because of time.

    .venv/bin/python bench/soak.py                        # 30 minutes at 500 records/s
    .venv/bin/python bench/soak.py --minutes 2 --rate 200 --fault-every 11 --seed 7
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gzip
import heapq
import itertools
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import unquote_plus

import boto3
import httpx
import msgspec
import psutil
import psycopg

from cardstream.generator import write_csv
from cardstream.local.processes import ChildProcess
from cardstream.local.stack import REGION, LocalStack, add_arguments, start
from cardstream.replay import ReplaySummary, replay_file
from cardstream_shared import resource_names as names

FAULT_KINDS = (
    "writer-kill",
    "writer-pause",
    "loader-kill",
    "postgres-restart",
    "api-kill",
    "kinesis-throttle",
    "s3-errors",
    "reshard",
    "poison",
)
RESTART_AFTER_S = 5.0
# Starts of a killed process before the soak gives up on it (reported as a fault result).
MAX_STARTS = 10
START_TIMEOUT_S = 120.0
HEALTH_POLL_S = 0.5
# Longer than the stream-writer's lease failover (10 s by default).
PAUSE_S = 15.0
BURST_S = 10.0
# An RDS reboot or Multi-AZ failover keeps the database away for tens of seconds.
POSTGRES_DOWN_S = 20.0
# Most calls refused, as when a shard is far over its limits: the API's retries within its
# put deadline then often fail too, and it answers 503 naming the records.
KINESIS_THROTTLED_FRACTION = 0.9
S3_FAILED_FRACTION = 0.3
SAMPLE_EVERY_S = 5.0
# A service's memory and descriptors are compared from this far into its life (or a
# quarter of the run, when shorter) to its end.
WARM_UP_S = 60.0
RSS_GROWTH_LIMIT = 0.25
RSS_SLACK_BYTES = 32 * 2**20
FDS_SLACK = 32
# The emulator and PostgreSQL keep what the run wrote: their memory grows with the data.
DATA_HOLDERS = ("aws-emulator", "postgres")


@dataclass
class Fault:
    """One injected fault: when (seconds into the load), what, on what, and what was seen."""

    at: float
    kind: str
    target: str = ""
    result: str = ""


@dataclass
class Sample:
    at: float
    rss: int
    fds: int


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Soak:
    """The run's state shared by the load, the fault injector and the sampler."""

    stack: LocalStack
    info: dict[str, Any]
    rng: random.Random
    started: float = field(default_factory=time.monotonic)
    faults: list[Fault] = field(default_factory=list)
    poisoned: set[str] = field(default_factory=set)
    samples: dict[tuple[str, int], list[Sample]] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)
    down: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.monotonic() - self.started

    def children(self, prefix: str) -> list[ChildProcess]:
        return [c for c in self.stack.children if c.name.startswith(prefix)]

    def kinesis(self) -> Any:
        return boto3.client(
            "kinesis", endpoint_url=self.info["aws_endpoint_url"], region_name=REGION
        )

    def s3(self) -> Any:
        return boto3.client("s3", endpoint_url=self.info["aws_endpoint_url"], region_name=REGION)

    def sqs(self) -> Any:
        return boto3.client("sqs", endpoint_url=self.info["aws_endpoint_url"], region_name=REGION)


def schedule(seed: int, seconds: float, every_s: float) -> list[tuple[float, str]]:
    """Fault times and kinds: one every ``every_s`` (none in the last ``every_s``, so the
    last one is recovered from before the load ends); each kind once per round."""
    rng = random.Random(seed)
    times = [every_s * k for k in range(1, int(seconds // every_s))]
    kinds: list[str] = []
    while len(kinds) < len(times):
        round_ = list(FAULT_KINDS)
        rng.shuffle(round_)
        kinds += round_
    return list(zip(times, kinds, strict=False))


# ---------------------------------------------------------------- faults


class Injector:
    """Runs the schedule in a thread of its own; follow-ups (SIGCONT, restarts, health
    checks) are timed events on the same queue, and none of them blocks: the faults keep to
    their schedule and the load's event loop never waits for one."""

    def __init__(self, soak: Soak, plan: list[tuple[float, str]]) -> None:
        self.soak = soak
        # (when, order, action, whether it is a scheduled fault rather than a follow-up)
        self._events: list[tuple[float, int, Callable[[], None], bool]] = []
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._draining = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)
        self._merge_next = False
        for at, kind in plan:
            self._at(at, functools.partial(self._inject, kind), fault=True)

    def _at(self, at: float, action: Callable[[], None], *, fault: bool = False) -> None:
        with self._lock:
            heapq.heappush(self._events, (at, next(self._order), action, fault))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Inject no more faults; wait for the follow-ups (a paused writer continues, a
        killed process starts again, PostgreSQL comes back) at their time."""
        with self._lock:
            self._events = [event for event in self._events if not event[3]]
            heapq.heapify(self._events)
        self._draining.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._lock:
                first = self._events[0] if self._events else None
            if first is None:
                if self._draining.is_set():
                    return
                time.sleep(0.5)
                continue
            at, _, action, _ = first
            if self.soak.now() < at:
                time.sleep(min(0.5, at - self.soak.now()))
                continue
            with self._lock:
                heapq.heappop(self._events)
            try:
                action()
            except Exception as exc:  # a failed injection is reported, not fatal
                self.soak.faults.append(Fault(self.soak.now(), "injector", result=repr(exc)))

    def _inject(self, kind: str) -> None:
        fault = Fault(self.soak.now(), kind)
        self.soak.faults.append(fault)
        getattr(self, "_" + kind.replace("-", "_"))(fault)

    def _victim(self, prefix: str) -> ChildProcess | None:
        with self.soak.lock:
            alive = [
                c
                for c in self.soak.children(prefix)
                if c.alive() and c.name not in self.soak.paused | self.soak.down
            ]
        return self.soak.rng.choice(alive) if alive else None

    def _kill(self, fault: Fault, prefix: str) -> None:
        child = self._victim(prefix)
        if child is None or child.process is None:
            fault.result = "skipped: no running process to kill"
            return
        fault.target = child.name
        with self.soak.lock:
            self.soak.down.add(child.name)
        child.process.kill()
        child.process.wait()
        killed_at = self.soak.now()
        attempts = 0
        started_at = 0.0

        def restart() -> None:
            # As ECS does with a task that stopped: start it again, and again if it exits
            # during start-up (a loader refuses to start while PostgreSQL is away).
            nonlocal attempts, started_at
            attempts += 1
            started_at = self.soak.now()
            child.start()
            self._at(self.soak.now() + HEALTH_POLL_S, check)

        def came_back(result: str) -> None:
            fault.result = result
            with self.soak.lock:
                self.soak.down.discard(child.name)

        def check() -> None:
            if not child.alive():
                reason = (child.log_tail(1) or "no log").strip()
                if attempts < MAX_STARTS:
                    fault.result = f"SIGKILL; start {attempts} exited ({reason[:80]})"
                    self._at(self.soak.now() + RESTART_AFTER_S, restart)
                else:
                    came_back(f"SIGKILL; did not come back after {attempts} starts: {reason}")
                return
            if healthy(child):
                came_back(
                    f"SIGKILL; started again after {RESTART_AFTER_S:.0f} s"
                    + (f" ({attempts} starts)" if attempts > 1 else "")
                    + f", healthy {self.soak.now() - killed_at:.1f} s after the kill"
                )
            elif self.soak.now() - started_at > START_TIMEOUT_S:
                came_back(f"SIGKILL; did not come back: not healthy {START_TIMEOUT_S:.0f} s")
            else:
                self._at(self.soak.now() + HEALTH_POLL_S, check)

        fault.result = "SIGKILL; not started again before the end"
        self._at(self.soak.now() + RESTART_AFTER_S, restart)

    def _writer_kill(self, fault: Fault) -> None:
        self._kill(fault, "stream-writer")

    def _loader_kill(self, fault: Fault) -> None:
        self._kill(fault, "db-loader")

    def _api_kill(self, fault: Fault) -> None:
        self._kill(fault, "ingest-api")

    def _writer_pause(self, fault: Fault) -> None:
        child = self._victim("stream-writer")
        if child is None or child.process is None:
            fault.result = "skipped: no running writer"
            return
        fault.target = child.name
        process = child.process
        with self.soak.lock:
            self.soak.paused.add(child.name)
        process.send_signal(signal.SIGSTOP)

        def resume() -> None:
            process.send_signal(signal.SIGCONT)
            with self.soak.lock:
                self.soak.paused.discard(child.name)
            fault.result = f"SIGSTOP for {PAUSE_S:.0f} s, then SIGCONT"

        fault.result = "SIGSTOP; not continued before the end"
        self._at(self.soak.now() + PAUSE_S, resume)

    def _postgres_restart(self, fault: Fault) -> None:
        postgres = self.soak.stack.postgres
        assert postgres is not None
        fault.target = "postgres"
        began = time.monotonic()
        postgres.stop()

        def start_again() -> None:
            postgres.start()
            fault.result = f"fast shutdown, started again: down {time.monotonic() - began:.1f} s"

        fault.result = "fast shutdown; not started again before the end"
        self._at(self.soak.now() + POSTGRES_DOWN_S, start_again)

    def _burst(self, fault: Fault, **fractions: float) -> None:
        proxy = self.soak.info["fault_proxy_url"]
        before = _injected(proxy)
        httpx.post(
            f"{proxy}/_fault_proxy/burst", json={"seconds": BURST_S, **fractions}, timeout=10
        ).raise_for_status()
        fault.target = "fault proxy"

        def count() -> None:
            after = _injected(proxy)
            answered = {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
            fault.result = f"{BURST_S:.0f} s: " + ", ".join(
                f"{n} {label}" for label, n in sorted(answered.items())
            )

        self._at(self.soak.now() + BURST_S + 1, count)

    def _kinesis_throttle(self, fault: Fault) -> None:
        self._burst(fault, kinesis=KINESIS_THROTTLED_FRACTION)

    def _s3_errors(self, fault: Fault) -> None:
        self._burst(fault, s3=S3_FAILED_FRACTION)

    def _reshard(self, fault: Fault) -> None:
        kinesis = self.soak.kinesis()
        shards = [
            s
            for s in kinesis.list_shards(StreamName=names.STREAM_NAME)["Shards"]
            if "EndingSequenceNumber" not in s["SequenceNumberRange"]
        ]
        shards.sort(key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
        if len(shards) > 4 or (self._merge_next and len(shards) > 1):
            k = self.soak.rng.randrange(len(shards) - 1)
            left, right = shards[k]["ShardId"], shards[k + 1]["ShardId"]
            kinesis.merge_shards(
                StreamName=names.STREAM_NAME, ShardToMerge=left, AdjacentShardToMerge=right
            )
            fault.target = f"{left} + {right}"
            verb = "merged"
        else:
            shard = self.soak.rng.choice(shards)
            low = int(shard["HashKeyRange"]["StartingHashKey"])
            high = int(shard["HashKeyRange"]["EndingHashKey"])
            kinesis.split_shard(
                StreamName=names.STREAM_NAME,
                ShardToSplit=shard["ShardId"],
                NewStartingHashKey=str((low + high + 1) // 2),
            )
            fault.target = shard["ShardId"]
            verb = "split"
        self._merge_next = not self._merge_next
        opened = [
            s["ShardId"]
            for s in kinesis.list_shards(StreamName=names.STREAM_NAME)["Shards"]
            if "EndingSequenceNumber" not in s["SequenceNumberRange"]
        ]
        fault.result = f"{verb}; open shards now {', '.join(sorted(opened))}"

    def _poison(self, fault: Fault) -> None:
        key = f"{names.RAW_PREFIX}poison/soak-{len(self.soak.poisoned) + 1}.jsonl.gz"
        self.soak.s3().put_object(
            Bucket=self.soak.info["bucket"], Key=key, Body=b"this is not gzip"
        )
        self.soak.poisoned.add(key)
        fault.target = key
        fault.result = "an object that is not gzip, under raw/"


def healthy(child: ChildProcess) -> bool:
    """Whether the process answers its health check with 200 now."""
    if child.health_url is None:
        return child.alive()
    try:
        return httpx.get(child.health_url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _injected(proxy: str) -> dict[str, int]:
    stats = httpx.get(f"{proxy}/_fault_proxy/stats", timeout=10).raise_for_status().json()
    return {str(k): int(v) for k, v in stats["injected"].items()}


# ---------------------------------------------------------------- resources


def sample_processes(soak: Soak, stop: threading.Event) -> None:
    """Resident memory and open descriptors of every process, every ``SAMPLE_EVERY_S``."""
    while not stop.wait(SAMPLE_EVERY_S):
        pids = {c.name: c.pid for c in soak.stack.children if c.alive() and c.pid}
        postgres = soak.stack.postgres
        if postgres is not None and postgres.process is not None:
            pids["postgres"] = postgres.process.pid
        for name, pid in pids.items():
            if pid is None or name in soak.paused:
                continue
            try:
                process = psutil.Process(pid)
                sample = Sample(soak.now(), process.memory_info().rss, process.num_fds())
            except psutil.Error:
                continue
            soak.samples.setdefault((name, pid), []).append(sample)


def resource_checks(soak: Soak, run_s: float) -> tuple[list[Check], list[str]]:
    """A check per process name (its last incarnation), and the table's lines."""
    last: dict[str, tuple[int, list[Sample]]] = {}
    for (name, pid), samples in soak.samples.items():
        if name not in last or samples[0].at > last[name][1][0].at:
            last[name] = (pid, samples)
    warm = min(WARM_UP_S, run_s / 4)
    checks, lines = [], []
    judged = 0
    for name, (pid, samples) in sorted(last.items()):
        born = samples[0].at
        warmed = next((s for s in samples if s.at - born >= warm), None)
        end = samples[-1]
        peak = max(s.rss for s in samples)
        if warmed is None or end.at - warmed.at < warm:
            # Started again late in the run: too young to tell growth from warming up.
            lines.append(
                f"  {name:<18} {pid:>7}  {'':>7} {end.rss / 2**20:7.0f} {peak / 2**20:7.0f} MB"
                f"   {'':>5} {end.fds:5d}   (restarted {born:.0f} s in: not judged)"
            )
            continue
        judged += 1
        rss_ok = name in DATA_HOLDERS or end.rss <= warmed.rss * (1 + RSS_GROWTH_LIMIT) + (
            RSS_SLACK_BYTES
        )
        fds_ok = end.fds <= warmed.fds + FDS_SLACK
        lines.append(
            f"  {name:<18} {pid:>7}  {warmed.rss / 2**20:7.0f} {end.rss / 2**20:7.0f} "
            f"{peak / 2**20:7.0f} MB   {warmed.fds:5d} {end.fds:5d}"
            + ("" if name not in DATA_HOLDERS else "   (holds the run's data)")
        )
        if not (rss_ok and fds_ok):
            checks.append(
                Check(
                    f"{name} bounded",
                    False,
                    f"RSS {warmed.rss / 2**20:.0f} -> {end.rss / 2**20:.0f} MB, "
                    f"fds {warmed.fds} -> {end.fds}",
                )
            )
    if not checks:
        checks.append(
            Check(
                "memory and descriptors bounded",
                True,
                f"{judged} processes; RSS growth <= {RSS_GROWTH_LIMIT:.0%} + 32 MB after "
                f"warm-up (emulator, PostgreSQL: descriptors only), fds <= warm-up + {FDS_SLACK}",
            )
        )
    return checks, lines


# ---------------------------------------------------------------- invariants


def wait_until(predicate: Callable[[], bool], timeout_s: float, every_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(every_s)
    return True


def loaded_rows(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT trans_num) FROM cardstream.transaction"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def fault_check(soak: Soak) -> Check:
    """Every scheduled fault was injected, and every process it stopped came back."""
    failed = [f for f in soak.faults if f.kind == "injector" or "did not come back" in f.result]
    kinds = sorted({f.kind for f in soak.faults if f.kind != "injector"})
    return Check(
        "every fault injected and recovered from",
        not failed,
        f"{len(soak.faults) - len(failed)} faults of {len(kinds)} kinds"
        + (
            f"; failed: {[f'{f.kind} at {f.at:.0f} s: {f.result}' for f in failed]}"
            if failed
            else ""
        ),
    )


def delivery_checks(soak: Soak, summary: ReplaySummary) -> list[Check]:
    dsn = soak.info["admin_database_url"]
    accepted = summary.accepted_trans_nums
    # Everything acknowledged should load; a killed loader's messages come back only after
    # their visibility timeout, so the wait allows a few of those.
    wait_until(lambda: loaded_rows(dsn)[1] >= len(accepted), timeout_s=300)
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = [r[0] for r in conn.execute("SELECT trans_num FROM cardstream.transaction")]
    present = set(rows)
    missing = accepted - present
    doubled = len(rows) - len(present)
    unacknowledged = present - accepted
    named = summary.named_not_accepted
    return [
        Check(
            "replay finished every record",
            summary.complete,
            f"{summary.records:,} read, {summary.accepted:,} accepted, {summary.rejected:,} "
            f"rejected, {summary.not_accepted:,} not accepted"
            + (f" ({summary.aborted})" if summary.aborted else ""),
        ),
        Check(
            "every acknowledged record in PostgreSQL exactly once",
            not missing and not doubled,
            f"{len(accepted):,} acknowledged, {len(missing):,} missing, {doubled:,} doubled"
            + (f", e.g. {sorted(missing)[:3]}" if missing else "")
            + (f"; {len(unacknowledged):,} rows never acknowledged" if unacknowledged else ""),
        ),
        Check(
            "every record a 503 named was resent and landed",
            named <= accepted and named <= present,
            f"{len(named):,} named, {len(named - accepted):,} never acknowledged, "
            f"{len(named - present):,} not in PostgreSQL",
        ),
    ]


def dlq_check(soak: Soak) -> Check:
    sqs = soak.sqs()
    dlq = soak.info["dlq_url"]

    def depth() -> int:
        attributes = sqs.get_queue_attributes(
            QueueUrl=dlq,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())

    # A poisoned object reaches the DLQ after the queue's maxReceiveCount failed loads.
    wait_until(lambda: depth() >= len(soak.poisoned), timeout_s=180)
    keys: list[str] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=600
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            body = json.loads(message["Body"])
            keys += [unquote_plus(r["s3"]["object"]["key"]) for r in body.get("Records", [])]
    unexpected = sorted(set(keys) - soak.poisoned)
    absent = sorted(soak.poisoned - set(keys))
    return Check(
        "nothing in the DLQ but the poisoned objects",
        not unexpected and not absent,
        f"{len(keys)} dead-lettered, {len(soak.poisoned)} poisoned"
        + (f"; unexpected: {unexpected[:3]}" if unexpected else "")
        + (f"; poisoned but not there: {absent[:3]}" if absent else ""),
    )


def written_order(soak: Soak) -> list[str]:
    """raw/ keys in the order S3 stored them: the proxy's journal, first answer per key
    that stored it (200, or a 5xx the proxy gave after storing)."""
    proxy = soak.info["fault_proxy_url"]
    entries = httpx.get(f"{proxy}/_fault_proxy/journal", timeout=120).raise_for_status().json()
    prefix = f"{soak.info['bucket']}/{names.RAW_PREFIX}"
    keys: dict[str, None] = {}
    for entry in entries["entries"]:
        detail = entry["detail"] or ""
        stored = entry["status"] == 200 or str(entry["error"] or "").endswith("AfterWrite")
        if entry["operation"] == "PutObject" and stored and detail.startswith(prefix):
            keys.setdefault(detail.removeprefix(soak.info["bucket"] + "/"))
    return list(keys)


def stream_positions(soak: Soak) -> tuple[dict[str, tuple[int, int, int]], int]:
    """trans_num -> (lineage depth of its shard, sequence number, card) at its first
    position in the stream; and the number of records read."""
    kinesis = soak.kinesis()
    shards = kinesis.list_shards(StreamName=names.STREAM_NAME)["Shards"]
    parents = {
        s["ShardId"]: [s[k] for k in ("ParentShardId", "AdjacentParentShardId") if k in s]
        for s in shards
    }

    def depth(shard_id: str) -> int:
        known = [p for p in parents.get(shard_id, []) if p in parents]
        return 0 if not known else 1 + max(depth(p) for p in known)

    cards: dict[str, int] = {}
    positions: dict[str, tuple[int, int, int]] = {}
    count = 0
    for shard in shards:
        shard_depth = depth(shard["ShardId"])
        iterator = kinesis.get_shard_iterator(
            StreamName=names.STREAM_NAME,
            ShardId=shard["ShardId"],
            ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"]
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            for record in response["Records"]:
                count += 1
                trans_num = msgspec.json.decode(record["Data"])["trans_num"]
                card = cards.setdefault(record["PartitionKey"], len(cards))
                position = (shard_depth, int(record["SequenceNumber"]), card)
                if trans_num not in positions or position < positions[trans_num]:
                    positions[trans_num] = position
            iterator = response.get("NextShardIterator")
            if not response["Records"] and not response.get("MillisBehindLatest"):
                break
    return positions, count


def landed_lines(s3: Any, bucket: str, key: str) -> Iterator[str]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    for line in gzip.decompress(body).splitlines():
        yield str(msgspec.json.decode(line)["trans_num"])


def order_check(soak: Soak) -> Check:
    keys = [k for k in written_order(soak) if k not in soak.poisoned]
    positions, in_stream = stream_positions(soak)
    s3 = soak.s3()
    last: dict[int, tuple[int, int]] = {}
    seen: set[str] = set()
    broken: list[str] = []
    absent = 0
    for key in keys:
        for trans_num in landed_lines(s3, soak.info["bucket"], key):
            if trans_num in seen:
                continue  # a second copy (a resent record) is the loader's to drop
            seen.add(trans_num)
            if trans_num not in positions:
                absent += 1
                continue
            lineage, sequence, card = positions[trans_num]
            if (lineage, sequence) < last.get(card, (-1, -1)):
                broken.append(f"{trans_num} in {key}")
            last[card] = max(last.get(card, (-1, -1)), (lineage, sequence))
    return Check(
        "no card's records written out of stream order",
        not broken and not absent,
        f"{len(keys):,} objects in write order, {len(seen):,} records of {len(last):,} cards "
        f"({in_stream:,} stream records); {len(broken)} out of order"
        + (f", e.g. {broken[:2]}" if broken else "")
        + (f"; {absent} landed records not in the stream" if absent else ""),
    )


# ---------------------------------------------------------------- the run


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stack_namespace(state_dir: Path, seed: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(
        [
            *("--state-dir", str(state_dir)),
            *("--apis", "2", "--shards", "4", "--writers", "2", "--loaders", "2"),
            *("--api-port", "0", "--dashboard-port", "0"),
            *("--fault-proxy", "--fault-seed", str(seed)),
        ]
    )


def print_tables(faults: list[Fault], checks: list[Check], resources: list[str]) -> None:
    print("\nfaults injected")
    print(f"  {'at (s)':>7}  {'fault':<17} {'target':<34} result")
    for fault in faults:
        print(f"  {fault.at:7.0f}  {fault.kind:<17} {fault.target:<34} {fault.result}")
    print("\nprocesses          pid      RSS warm     end    peak        fds warm   end")
    print("\n".join(resources))
    print("\ninvariants")
    for check in checks:
        print(f"  {'PASS' if check.passed else 'FAIL'}  {check.name}: {check.detail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=500.0, help="records/s offered")
    parser.add_argument("--seed", type=int, default=None, help="default: drawn and printed")
    parser.add_argument("--fault-every", type=float, default=30.0, help="seconds")
    parser.add_argument("--batch", type=int, default=10, help="records per request")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    seconds = args.minutes * 60
    plan = schedule(seed, seconds, args.fault_every)
    missing = sorted(set(FAULT_KINDS) - {kind for _, kind in plan})
    print(
        f"chaos soak: seed {seed}, {args.minutes:g} minutes at {args.rate:g} records/s, "
        f"{len(plan)} faults (one every {args.fault_every:g} s)"
        + (f"; too short for {', '.join(missing)}" if missing else ""),
        flush=True,
    )
    print(f"load average at start: {os.getloadavg()}", flush=True)
    # SIGTERM stops the stack as Ctrl-C does (a run in the background ignores SIGINT).
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with tempfile.TemporaryDirectory(prefix="cardstream-soak-") as folder:
        root = Path(folder)
        rows = root / "rows.csv"
        write_csv(rows, rows=int(args.rate * seconds), seed=seed)
        stack: LocalStack | None = None
        try:
            stack, info = start(stack_namespace(root / "state", seed))
            soak = Soak(stack, info, random.Random(seed))
            injector = Injector(soak, plan)
            sampling = threading.Event()
            sampler = threading.Thread(target=sample_processes, args=(soak, sampling))
            soak.started = time.monotonic()
            injector.start()
            sampler.start()
            try:
                summary = asyncio.run(
                    replay_file(
                        rows,
                        url=info["api_urls"],
                        token=info["token"],
                        rate=args.rate,
                        batch=args.batch,
                        concurrency=args.concurrency,
                        # No deadline: a slow machine makes the load last longer, never
                        # fails it; a record the client gave up on is reported.
                        max_seconds=None,
                        collect_trans_nums=True,
                    )
                )
            finally:
                injector.stop()
            load_s = soak.now()
            print(
                f"load done after {load_s:.0f} s: {summary.accepted:,} accepted "
                f"({summary.throughput:,.0f} records/s), {summary.retried_records:,} resent; "
                "checking",
                flush=True,
            )
            checks = [fault_check(soak), *delivery_checks(soak, summary)]
            checks.append(dlq_check(soak))
            checks.append(order_check(soak))
            sampling.set()
            sampler.join()
            resource, lines = resource_checks(soak, load_s)
            checks += resource
            print_tables(soak.faults, checks, lines)
            print(f"\nseed {seed}; {args.minutes:g} minutes; load average {os.getloadavg()}")
            return 0 if all(check.passed for check in checks) else 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            if stack is not None:
                stack.stop()


if __name__ == "__main__":
    sys.exit(main())
