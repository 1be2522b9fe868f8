"""stream-writer fault tests F3, F4, F5 and scaling, as real worker processes against moto.

Each test produces valid envelopes to Kinesis (partition key = card token), runs
``python -m stream_writer`` workers with small thresholds, injects the fault, and then
checks what a user of the landing bucket sees: every produced record is in some raw/
object, no key was ever written twice (the bucket is versioned), and each card's records
keep their order within and across the objects of a shard lineage. Finally a real
``python -m db_loader`` drains the S3 notifications into PostgreSQL and the pipeline's
invariant is checked on the rows: every produced record exactly once. The loader starts
after the writers stopped because moto serves one request at a time and its SQS long poll
would hold the writers' lease renewals back.
"""

from __future__ import annotations

import datetime as dt
import gzip
import http.server
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import msgspec
import psycopg
import pytest

from cardstream.local.aws_resources import create_all
from cardstream.local.ports import free_port, wait_for_port
from cardstream.local.processes import python_module
from cardstream_shared import resource_names as names
from cardstream_shared.contract import StreamEnvelope, TransactionIn, kaggle_example
from cardstream_shared.pan import PanKeyring, luhn_valid
from db_loader.migrate import bootstrap, with_credentials

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REGION = "us-east-1"
# Waits are on events; their ceilings allow for a 2-core machine loaded many times over.
LANDING_TIMEOUT_S = 180
EVENT_TIMEOUT_S = 60
CARDS = 16
FAST = {
    "failover_s": "2",
    "flush_max_age_s": "0.5",
    "poll_interval_s": "0.1",
    "shard_sync_interval_s": "1",
    "lease_take_interval_s": "0.5",
}


# ---------------------------------------------------------------- producing


def _pans() -> list[str]:
    pans = []
    for i in range(CARDS):
        body = f"4{i:014d}"
        pans.append(next(body + str(d) for d in range(10) if luhn_valid(body + str(d))))
    return pans


class Producer:
    """Puts envelopes to Kinesis; trans_num = card index + that card's running counter."""

    def __init__(self, kinesis: Any) -> None:
        self._kinesis = kinesis
        self._ring = PanKeyring({"e2e": b"e2e-writer-test-key-0123456789ab"}, "e2e")
        self._pans = _pans()
        self._tokens = [self._ring.tokenize(pan) for pan in self._pans]
        self._counters = [0] * CARDS
        self._next_card = 0
        self.produced: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _entries(self, count: int) -> list[dict[str, Any]]:
        entries = []
        now = dt.datetime.now(dt.UTC)
        for _ in range(count):
            card = self._next_card
            self._next_card = (card + 1) % CARDS
            self._counters[card] += 1
            trans_num = f"c{card:02d}-{self._counters[card]:06d}"
            txn = TransactionIn.model_validate(
                {**kaggle_example(), "trans_num": trans_num, "cc_num": self._pans[card]}
            )
            env = StreamEnvelope.from_transaction(
                txn, self._tokens[card], client_id="e2e", received_at=now
            )
            entries.append({"Data": env.to_json_bytes(), "PartitionKey": env.card_token})
        return entries

    def put(self, count: int) -> None:
        """Put ``count`` records now, resending any entry Kinesis refused."""
        pending = self._entries(count)
        while pending:
            result = self._kinesis.put_records(StreamName=names.STREAM_NAME, Records=pending)
            refused = []
            for entry, outcome in zip(pending, result["Records"], strict=True):
                if "ErrorCode" in outcome:
                    refused.append(entry)
                else:
                    self.produced.append(msgspec.json.decode(entry["Data"])["trans_num"])
            pending = refused

    def start(self, per_tick: int = 10, tick_s: float = 0.05) -> None:
        """Produce in the background until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.is_set():
                self.put(per_tick)
                time.sleep(tick_s)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


# ---------------------------------------------------------------- workers


@dataclass
class Writer:
    worker_id: str
    process: subprocess.Popen[bytes]
    health_port: int
    log_path: Path

    def health(self) -> dict[str, Any] | None:
        try:
            response = httpx.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2)
        except httpx.HTTPError:
            return None
        return dict(response.json())

    def leases(self) -> list[str] | None:
        health = self.health()
        return None if health is None else list(health["leases"])

    def metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.health_port}/metrics", timeout=2).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@dataclass
class Writers:
    tmp_path: Path
    started: list[Writer] = field(default_factory=list)

    def start(self, worker_id: str, endpoint: str, **settings: str) -> Writer:
        port = free_port()
        log_path = self.tmp_path / f"{worker_id}.log"
        env = {
            **os.environ,
            "WRITER_ENVIRONMENT": "test",
            "WRITER_AWS_ENDPOINT_URL": endpoint,
            "WRITER_WORKER_ID": worker_id,
            "WRITER_BUCKET": names.LANDING_BUCKET,
            "WRITER_HEALTH_PORT": str(port),
            **{f"WRITER_{key.upper()}": value for key, value in {**FAST, **settings}.items()},
        }
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "stream_writer"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        writer = Writer(worker_id, process, port, log_path)
        self.started.append(writer)
        wait_for_port("127.0.0.1", port, timeout_s=60, alive=lambda: process.poll() is None)
        return writer

    def stop_all(self) -> None:
        for writer in self.started:
            if writer.process.poll() is None:
                os.kill(writer.process.pid, signal.SIGCONT)
                writer.process.kill()
                writer.process.wait(30)


@pytest.fixture
def writers(tmp_path: Path) -> Iterator[Writers]:
    group = Writers(tmp_path)
    yield group
    group.stop_all()


@dataclass
class AwsProxy:
    """A ``cardstream.local.fault_proxy`` process: forwards to the emulator, journals every
    answer in the order it gave them, and fails Kinesis or S3 calls during a burst."""

    url: str
    process: subprocess.Popen[bytes]

    def journal(self, since: int = 0) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/_fault_proxy/journal", params={"since": since})
        return list(response.raise_for_status().json()["entries"])

    def answered(self) -> int:
        response = httpx.get(f"{self.url}/_fault_proxy/journal", params={"since": 1 << 62})
        return int(response.raise_for_status().json()["answered"])

    def burst(self, seconds: float, **fractions: float) -> None:
        httpx.post(
            f"{self.url}/_fault_proxy/burst", json={"seconds": seconds, **fractions}
        ).raise_for_status()

    def raw_writes(self) -> list[str]:
        """Keys of the raw/ objects S3 stored, in the order it acknowledged them."""
        prefix = f"{names.LANDING_BUCKET}/{names.RAW_PREFIX}"
        return [
            entry["detail"].removeprefix(f"{names.LANDING_BUCKET}/")
            for entry in self.journal()
            if entry["operation"] == "PutObject"
            and entry["status"] == 200
            and (entry["detail"] or "").startswith(prefix)
        ]


@dataclass
class AwsProxies:
    tmp_path: Path
    started: list[AwsProxy] = field(default_factory=list)

    def start(self, target: str) -> AwsProxy:
        port = free_port()
        log_path = self.tmp_path / f"fault-proxy-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                python_module(
                    "cardstream.local.fault_proxy", "--target", target, "--port", str(port)
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        proxy = AwsProxy(f"http://127.0.0.1:{port}", process)
        self.started.append(proxy)
        wait_for_port("127.0.0.1", port, timeout_s=60, alive=lambda: process.poll() is None)
        return proxy

    def stop_all(self) -> None:
        for proxy in self.started:
            proxy.process.terminate()
            proxy.process.wait(30)


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[AwsProxies]:
    group = AwsProxies(tmp_path)
    yield group
    group.stop_all()


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def terminate(writer: Writer) -> int:
    writer.process.send_signal(signal.SIGTERM)
    return writer.process.wait(30)


# ---------------------------------------------------------------- what landed


def clients(endpoint: str) -> dict[str, Any]:
    return {
        name: boto3.client(name, endpoint_url=endpoint, region_name=REGION)
        for name in ("kinesis", "s3", "sqs", "dynamodb")
    }


@dataclass(frozen=True)
class Landed:
    key: str
    shard_id: str
    first: int
    trans_nums: list[str]
    metadata: dict[str, str]


def landed(s3: Any) -> list[Landed]:
    """Every raw/ object; fails if any key was written more than once."""
    versions: dict[str, int] = {}
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=names.LANDING_BUCKET, Prefix=names.RAW_PREFIX):
        for version in page.get("Versions", []) + page.get("DeleteMarkers", []):
            versions[version["Key"]] = versions.get(version["Key"], 0) + 1
    overwritten = {key: count for key, count in versions.items() if count > 1}
    assert not overwritten, f"objects written more than once: {overwritten}"
    objects = []
    for key in versions:
        response = s3.get_object(Bucket=names.LANDING_BUCKET, Key=key)
        lines = gzip.decompress(response["Body"].read()).splitlines()
        shard_id, first, _ = key.rsplit("/", 1)[1].removesuffix(".jsonl.gz").rsplit("-", 2)
        objects.append(
            Landed(
                key,
                shard_id,
                int(first),
                [msgspec.json.decode(line)["trans_num"] for line in lines],
                response["Metadata"],
            )
        )
    return objects


def landed_ids(s3: Any) -> set[str]:
    return {trans_num for obj in landed(s3) for trans_num in obj.trans_nums}


def wait_all_landed(s3: Any, produced: list[str]) -> None:
    """Every produced record in some landed object; the time allowed is for a machine
    loaded many times over (nothing is asserted on time), and a timeout names what is
    missing."""
    missing = set(produced)

    def all_landed() -> bool:
        missing.difference_update(landed_ids(s3))
        return not missing

    try:
        wait_for(all_landed, LANDING_TIMEOUT_S, "every record landed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {len(missing)} missing, e.g. {sorted(missing)[:5]}") from None


def shard_depths(kinesis: Any) -> dict[str, int]:
    shards = kinesis.list_shards(StreamName=names.STREAM_NAME)["Shards"]
    parents = {
        shard["ShardId"]: [
            shard[key] for key in ("ParentShardId", "AdjacentParentShardId") if key in shard
        ]
        for shard in shards
    }

    def depth(shard_id: str) -> int:
        known = [p for p in parents.get(shard_id, []) if p in parents]
        return 0 if not known else 1 + max(depth(p) for p in known)

    return {shard_id: depth(shard_id) for shard_id in parents}


def assert_all_landed_in_card_order(
    objects: list[Landed], produced: list[str], written: list[str]
) -> None:
    """Every produced record landed, and each card's records were written in the order
    they were produced: objects taken in the order S3 acknowledged them (``written``, from
    the proxy's journal), records in their order inside each object."""
    seen = {trans_num for obj in objects for trans_num in obj.trans_nums}
    missing = set(produced) - seen
    assert not missing, f"{len(missing)} produced records never landed, e.g. {sorted(missing)[:5]}"
    by_key = {obj.key: obj for obj in objects}
    assert sorted(written) == sorted(by_key), "the journal and the bucket disagree"
    last: dict[str, int] = {}
    first_seen: set[str] = set()
    for key in written:
        for trans_num in by_key[key].trans_nums:
            if trans_num in first_seen:
                continue  # a duplicate across objects is allowed at this hop
            first_seen.add(trans_num)
            card, counter = trans_num.split("-")
            assert int(counter) > last.get(card, 0), f"{trans_num} written out of order ({key})"
            last[card] = int(counter)


def lease_items(dynamodb: Any) -> dict[str, dict[str, Any]]:
    items = dynamodb.scan(TableName=names.LEASE_TABLE, ConsistentRead=True)["Items"]
    return {item["leaseKey"]["S"]: item for item in items}


def assert_loaded_exactly_once(
    endpoint: str, queue_url: str, database: str, produced: list[str], tmp_path: Path
) -> None:
    """Run a db-loader over every notification; each produced record is one row."""
    password = secrets.token_urlsafe(16)
    bootstrap(database, role_passwords={names.DB_LOADER_ROLE: password})
    port = free_port()
    env = {
        **os.environ,
        "LOADER_ENVIRONMENT": "test",
        "LOADER_QUEUE_URL": queue_url,
        "LOADER_DATABASE_URL": with_credentials(database, names.DB_LOADER_ROLE, password),
        "LOADER_AWS_ENDPOINT_URL": endpoint,
        "LOADER_HEALTH_PORT": str(port),
        "LOADER_WAIT_TIME_S": "1",
        "LOADER_RETRY_DELAY_S": "0",
    }
    sqs = clients(endpoint)["sqs"]

    def drained() -> bool:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values()) == 0

    with (tmp_path / "db-loader.log").open("wb") as log:
        loader = subprocess.Popen(
            [sys.executable, "-m", "db_loader"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for(drained, 60, "the loader to drain the queue")
    finally:
        loader.send_signal(signal.SIGTERM)
        assert loader.wait(30) == 0, (tmp_path / "db-loader.log").read_text()[-3000:]
    with psycopg.connect(database) as conn:
        rows = [row[0] for row in conn.execute("SELECT trans_num FROM cardstream.transaction")]
    assert len(rows) == len(set(rows))
    assert set(rows) == set(produced)


# ---------------------------------------------------------------- fault injection


class InterceptingProxy:
    """Forwards a writer's AWS calls and stops the writer at a chosen call.

    The only fake in these tests: it injects the fault at an exact point of the protocol
    (after the S3 put, before the checkpoint) instead of hoping a random signal lands there.
    ``kill`` SIGKILLs the writer and drops the call. ``pause`` SIGSTOPs it and holds the call
    until :meth:`release`, then forwards it: a request sent just before a long pause (a GC,
    a stopped VM) that reaches AWS after another worker took over.
    """

    def __init__(
        self,
        target: str,
        intercept: Callable[[str, str, dict[str, str], bytes], bool],
        action: str = "kill",
    ) -> None:
        self.target = target
        self.intercept = intercept
        self.action = action
        self.victim: int | None = None
        self.intercepted = threading.Event()
        self._released = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # HTTP/1.1 so that "Expect: 100-continue" (sent with S3 puts) is answered.
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                self.close_connection = True
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("connection", "keep-alive", "expect", "transfer-encoding")
                }
                if (
                    proxy.victim is not None
                    and not proxy.intercepted.is_set()
                    and proxy.intercept(self.command, self.path, headers, body)
                ):
                    if proxy.action == "kill":
                        os.kill(proxy.victim, signal.SIGKILL)
                        proxy.intercepted.set()
                        return
                    os.kill(proxy.victim, signal.SIGSTOP)
                    proxy.intercepted.set()
                    proxy._released.wait(120)
                response = httpx.request(
                    self.command,
                    proxy.target + self.path,
                    headers=headers,
                    content=body,
                    timeout=30,
                )
                self.send_response(response.status_code)
                for key, value in response.headers.items():
                    if key.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(response.content)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(response.content)

            # http.server dispatches on these stdlib names.
            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Forward the held call (``pause``)."""
        self._released.set()

    def close(self) -> None:
        self._released.set()
        self.server.shutdown()
        self.server.server_close()


def is_checkpoint(method: str, path: str, headers: dict[str, str], body: bytes) -> bool:
    target = next((v for k, v in headers.items() if k.lower() == "x-amz-target"), "")
    return target.endswith(".UpdateItem") and b"SET checkpoint" in body


def is_raw_put(method: str, path: str, headers: dict[str, str], body: bytes) -> bool:
    return method == "PUT" and f"/{names.LANDING_BUCKET}/{names.RAW_PREFIX}" in path


# ---------------------------------------------------------------- F3


@pytest.mark.parametrize(
    ("kill_at", "rebuilt"),
    [(is_checkpoint, False), (is_raw_put, True)],
    ids=["after-put-before-checkpoint", "before-put-after-announce"],
)
def test_f3_hard_kill_around_the_put_loses_nothing_and_writes_no_second_copy(
    moto_reset: str,
    writers: Writers,
    proxies: AwsProxies,
    kill_at: Callable[..., bool],
    rebuilt: bool,
    empty_database: str,
    tmp_path: Path,
) -> None:
    aws = clients(moto_reset)
    resources = create_all(aws, region=REGION, shards=1)
    producer = Producer(aws["kinesis"])
    producer.put(400)
    recorder = proxies.start(moto_reset)
    proxy = InterceptingProxy(recorder.url, kill_at, "kill")
    try:
        first = writers.start("f3-first", proxy.url, flush_max_records="150")
        proxy.victim = first.process.pid
        wait_for(proxy.intercepted.is_set, EVENT_TIMEOUT_S, "the kill at the chosen call")
        assert first.process.wait(10) == -signal.SIGKILL
    finally:
        proxy.close()

    [lease] = lease_items(aws["dynamodb"]).values()
    assert lease["checkpoint"]["S"] == "TRIM_HORIZON"  # the checkpoint never moved
    pending_key = lease["pendingRawKey"]["S"]
    # The announced object is named for the first 150 records of the shard.
    first_150 = aws["kinesis"].get_records(
        ShardIterator=aws["kinesis"].get_shard_iterator(
            StreamName=resources.stream_name,
            ShardId="shardId-000000000000",
            ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"],
        Limit=150,
    )["Records"]
    first, last = first_150[0]["SequenceNumber"], first_150[-1]["SequenceNumber"]
    assert pending_key.endswith(f"-{first}-{last}.jsonl.gz")
    keys_before = {obj.key for obj in landed(aws["s3"])}
    assert keys_before == (set() if rebuilt else {pending_key})

    second = writers.start("f3-second", recorder.url, flush_max_records="150")
    wait_all_landed(aws["s3"], producer.produced)
    assert terminate(second) == 0, second.log()

    objects = landed(aws["s3"])
    assert_all_landed_in_card_order(objects, producer.produced, recorder.raw_writes())
    by_key = {obj.key: obj for obj in objects}
    # The announced object exists once, with exactly the first 150 records.
    assert len(by_key[pending_key].trans_nums) == 150
    expected_writer = "f3-second" if rebuilt else "f3-first"
    assert by_key[pending_key].metadata["writer-id"] == expected_writer
    # The takeover resolved the pending object: not one record was written twice.
    all_ids = [trans_num for obj in objects for trans_num in obj.trans_nums]
    assert len(all_ids) == len(set(all_ids)) == 400
    assert_loaded_exactly_once(
        moto_reset, resources.queue_url, empty_database, producer.produced, tmp_path
    )


# ---------------------------------------------------------------- F4


@pytest.mark.parametrize(
    ("pause_at", "refused"),
    [
        (is_checkpoint, ("UpdateItem", "ConditionalCheckFailedException")),
        (is_raw_put, ("PutObject", "PreconditionFailed")),
    ],
    ids=["checkpoint", "conditional-put"],
)
def test_f4_paused_zombie_is_fenced_and_lets_go(
    moto_reset: str,
    writers: Writers,
    proxies: AwsProxies,
    pause_at: Callable[..., bool],
    refused: tuple[str, str],
    empty_database: str,
    tmp_path: Path,
) -> None:
    """The zombie is paused with a write in flight (its checkpoint, or its conditional put);
    the write reaches AWS after the survivor took the shard over, and AWS refuses it."""
    aws = clients(moto_reset)
    resources = create_all(aws, region=REGION, shards=1)
    # Every writer's calls go through the recorder; the zombie's pass first through the
    # pausing proxy and then a journal of their own: what the zombie sent and was answered.
    recorder = proxies.start(moto_reset)
    zombie_calls = proxies.start(recorder.url)
    pauser = InterceptingProxy(zombie_calls.url, pause_at, "pause")
    producer = Producer(aws["kinesis"])
    producer.start()
    try:
        zombie = writers.start("f4-zombie", pauser.url)
        wait_for(
            lambda: zombie.leases() == ["shardId-000000000000"],
            EVENT_TIMEOUT_S,
            "zombie owns the shard",
        )
        survivor = writers.start("f4-survivor", recorder.url)
        wait_for(lambda: survivor.leases() == [], EVENT_TIMEOUT_S, "survivor up")
        pauser.victim = zombie.process.pid
        wait_for(
            pauser.intercepted.is_set, EVENT_TIMEOUT_S, "the zombie paused with its write in flight"
        )
        held_key = lease_items(aws["dynamodb"])["shardId-000000000000"]["pendingRawKey"]["S"]
        wait_for(
            lambda: survivor.leases() == ["shardId-000000000000"],
            EVENT_TIMEOUT_S,
            "survivor took the lease",
        )
        wait_for(
            lambda: any(obj.metadata["writer-id"] == "f4-survivor" for obj in landed(aws["s3"])),
            EVENT_TIMEOUT_S,
            "the survivor wrote an object",
        )
        resumed_at = zombie_calls.answered() + 1
        pauser.release()
        wait_for(
            lambda: zombie_calls.answered() >= resumed_at,
            EVENT_TIMEOUT_S,
            "the held write answered",
        )
        os.kill(zombie.process.pid, signal.SIGCONT)
        wait_for(lambda: zombie.leases() == [], EVENT_TIMEOUT_S, "zombie let go of the shard")
        assert survivor.leases() == ["shardId-000000000000"]
        producer.stop()
        wait_all_landed(aws["s3"], producer.produced)
        assert terminate(zombie) == 0, zombie.log()
        assert terminate(survivor) == 0, survivor.log()
    finally:
        producer.stop()
        pauser.close()

    after = zombie_calls.journal(resumed_at)
    held = after[0]
    assert (held["operation"], held["error"]) == refused, after
    if held["operation"] == "PutObject":
        assert held["detail"] == f"{names.LANDING_BUCKET}/{held_key}"
    else:
        assert held["detail"].startswith("SET checkpoint"), held
    # Nothing the zombie sent after its pause was accepted: no renewal, no checkpoint, no object.
    accepted = [
        call
        for call in after
        if call["operation"] in ("UpdateItem", "PutObject") and call["status"] < 400
    ]
    assert not accepted, accepted

    objects = landed(aws["s3"])  # fails if any key has two versions
    by_key = {obj.key: obj for obj in objects}
    # The held put found the survivor's rebuild of the same batch; the held checkpoint
    # followed a put that had landed, which the survivor found and kept.
    expected_writer = "f4-survivor" if held["operation"] == "PutObject" else "f4-zombie"
    assert by_key[held_key].metadata["writer-id"] == expected_writer
    assert_all_landed_in_card_order(objects, producer.produced, recorder.raw_writes())
    assert_loaded_exactly_once(
        moto_reset, resources.queue_url, empty_database, producer.produced, tmp_path
    )


# ---------------------------------------------------------------- F5


@pytest.fixture
def resharding_moto(tmp_path: Path) -> Iterator[str]:
    """A moto server of its own (the local stack's: it reshards like AWS, see
    cardstream.local.moto_resharding), so that the resharded stream is this test's alone."""
    port = free_port()
    with (tmp_path / "moto.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cardstream.local.moto_server", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port("127.0.0.1", port, timeout_s=60, alive=lambda: process.poll() is None)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def open_shards(kinesis: Any) -> list[str]:
    """Ids of the stream's open shards, by the start of their hash key range."""
    return [
        shard_id
        for _, shard_id in sorted(
            (int(s["HashKeyRange"]["StartingHashKey"]), s["ShardId"])
            for s in kinesis.list_shards(StreamName=names.STREAM_NAME)["Shards"]
            if "EndingSequenceNumber" not in s["SequenceNumberRange"]
        )
    ]


def wait_active(kinesis: Any) -> None:
    wait_for(
        lambda: (
            kinesis.describe_stream_summary(StreamName=names.STREAM_NAME)[
                "StreamDescriptionSummary"
            ]["StreamStatus"]
            == "ACTIVE"
        ),
        20,
        "the stream to be ACTIVE again",
    )


def test_f5_resharding_with_unread_records_keeps_every_record_and_card_order(
    resharding_moto: str,
    writers: Writers,
    proxies: AwsProxies,
    empty_database: str,
    tmp_path: Path,
) -> None:
    """Each reshard happens while its parents still hold records no writer has read, and
    records go on arriving in the children: a child read before its parents reached
    SHARD_END writes a card's later records before its earlier ones, which the order the
    objects were written in (the proxy's journal of acknowledged puts) shows."""
    aws = clients(resharding_moto)
    resources = create_all(aws, region=REGION, shards=2)
    kinesis = aws["kinesis"]
    recorder = proxies.start(resharding_moto)
    producer = Producer(kinesis)
    # Reads of 20 records at most 5 times a second: 300 unread records hold a shard's
    # reader for seconds, long after its children are listed and leased.
    small_reads = {"get_records_limit": "20", "flush_max_records": "20"}
    first = writers.start("f5-a", recorder.url, **small_reads)
    second = writers.start("f5-b", recorder.url, **small_reads)
    wait_for(
        lambda: sorted((first.leases() or []) + (second.leases() or [])) == open_shards(kinesis),
        EVENT_TIMEOUT_S,
        "the writers to own both shards",
    )

    def backlog() -> None:
        for _ in range(3):
            producer.put(200)

    backlog()
    kinesis.update_shard_count(
        StreamName=names.STREAM_NAME, TargetShardCount=4, ScalingType="UNIFORM_SCALING"
    )
    wait_active(kinesis)
    backlog()
    children = open_shards(kinesis)
    kinesis.merge_shards(
        StreamName=names.STREAM_NAME, ShardToMerge=children[0], AdjacentShardToMerge=children[1]
    )
    wait_active(kinesis)
    backlog()
    wait_all_landed(aws["s3"], producer.produced)
    assert terminate(first) == 0, first.log()
    assert terminate(second) == 0, second.log()

    depths = shard_depths(kinesis)
    assert max(depths.values()) == 2  # split, then merge of two children
    objects = landed(aws["s3"])
    assert_all_landed_in_card_order(objects, producer.produced, recorder.raw_writes())
    # Records were produced into every generation, so each lineage was really crossed.
    assert {depths[obj.shard_id] for obj in objects} == {0, 1, 2}
    leases = lease_items(aws["dynamodb"])
    closed = {
        s["ShardId"]
        for s in kinesis.list_shards(StreamName=names.STREAM_NAME)["Shards"]
        if "EndingSequenceNumber" in s["SequenceNumberRange"]
    }
    assert {shard: leases[shard]["checkpoint"]["S"] for shard in closed} == dict.fromkeys(
        closed, "SHARD_END"
    )
    assert_loaded_exactly_once(
        resharding_moto, resources.queue_url, empty_database, producer.produced, tmp_path
    )


# ---------------------------------------------------------------- scaling


def written_by(s3: Any, worker_id: str) -> set[str]:
    """Shards that ``worker_id`` wrote at least one landed object of."""
    return {obj.shard_id for obj in landed(s3) if obj.metadata["writer-id"] == worker_id}


def test_worker_added_takes_its_share_and_a_stopped_one_hands_over_at_once(
    moto_reset: str,
    writers: Writers,
    proxies: AwsProxies,
    empty_database: str,
    tmp_path: Path,
) -> None:
    aws = clients(moto_reset)
    resources = create_all(aws, region=REGION, shards=4)
    recorder = proxies.start(moto_reset)
    producer = Producer(aws["kinesis"])
    # A failover far longer than the waits below: any takeover seen here came from a steal
    # or a release on SIGTERM, never from a lease expiring.
    slow_failover = {"failover_s": "60"}
    first = writers.start("scale-a", recorder.url, **slow_failover)
    wait_for(
        lambda: len(first.leases() or []) == 4, EVENT_TIMEOUT_S, "first worker owns every shard"
    )
    producer.start()
    try:
        second = writers.start("scale-b", recorder.url, **slow_failover)
        wait_for(
            lambda: (len(first.leases() or []), len(second.leases() or [])) == (2, 2),
            EVENT_TIMEOUT_S,
            "fair share 2/2",
        )
        assert second.metric("cardstream_writer_lease_steals_total") == 2
        stolen = set(second.leases() or [])
        wait_for(
            lambda: written_by(aws["s3"], "scale-b") == stolen,
            EVENT_TIMEOUT_S,
            "the stealer wrote its shards",
        )
        handed_over = set(first.leases() or [])
        assert terminate(first) == 0, first.log()
        # Half the failover: only the release on SIGTERM hands the shards over this soon.
        wait_for(lambda: len(second.leases() or []) == 4, 30, "survivor owns every shard")
        wait_for(
            lambda: written_by(aws["s3"], "scale-b") >= handed_over,
            EVENT_TIMEOUT_S,
            "the survivor wrote the shards handed over",
        )
    finally:
        producer.stop()
    wait_all_landed(aws["s3"], producer.produced)
    assert terminate(second) == 0, second.log()
    objects = landed(aws["s3"])
    assert_all_landed_in_card_order(objects, producer.produced, recorder.raw_writes())
    assert_loaded_exactly_once(
        moto_reset, resources.queue_url, empty_database, producer.produced, tmp_path
    )


def test_killed_worker_loses_nothing_and_the_survivor_takes_every_shard(
    moto_reset: str,
    writers: Writers,
    proxies: AwsProxies,
    empty_database: str,
    tmp_path: Path,
) -> None:
    aws = clients(moto_reset)
    resources = create_all(aws, region=REGION, shards=4)
    recorder = proxies.start(moto_reset)
    producer = Producer(aws["kinesis"])
    first = writers.start("kill-a", recorder.url)
    second = writers.start("kill-b", recorder.url)
    wait_for(
        lambda: sorted([len(first.leases() or []), len(second.leases() or [])]) == [2, 2],
        EVENT_TIMEOUT_S,
        "two workers share four shards",
    )
    producer.start()
    try:
        orphaned = set(first.leases() or [])
        wait_for(
            lambda: written_by(aws["s3"], "kill-a") == orphaned,
            EVENT_TIMEOUT_S,
            "the victim wrote its shards",
        )
        first.process.kill()
        first.process.wait(10)
        wait_for(
            lambda: len(second.leases() or []) == 4, EVENT_TIMEOUT_S, "survivor owns every shard"
        )
        wait_for(
            lambda: written_by(aws["s3"], "kill-b") >= orphaned,
            EVENT_TIMEOUT_S,
            "the survivor wrote the orphaned shards",
        )
    finally:
        producer.stop()
    wait_all_landed(aws["s3"], producer.produced)
    assert terminate(second) == 0, second.log()
    objects = landed(aws["s3"])
    assert_all_landed_in_card_order(objects, producer.produced, recorder.raw_writes())
    assert_loaded_exactly_once(
        moto_reset, resources.queue_url, empty_database, producer.produced, tmp_path
    )
