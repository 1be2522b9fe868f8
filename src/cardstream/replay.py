"""``cardstream replay``: the merchant client, posting a Kaggle-format CSV to the API.

The file is read as a stream (the published ``fraudTrain.csv`` has 1.3 million rows and is
never held in memory) and posted in batches to ``/v1/transactions/batch`` (or one by one to
``/v1/transactions`` when the batch size is 1) at a target rate in records per second.

The API's contract decides what is resent. A record is finished once the API answered
``accepted`` or ``rejected`` for it. A 503 names the records that were ``not_accepted``:
only those are resent, after the ``Retry-After`` the API asked for; a 429 refuses the whole
request, which is resent after its ``Retry-After``; a 413 splits the request in halves.
Transport errors and other 5xx answers are retried with jittered exponential backoff.

Given several URLs (instances of the API, as behind a load balancer), requests go to them in
turn; an instance whose connection failed (a transport error: refused, reset, timed out) is
left out for ``FAILOVER_S`` and the request goes at once to the next instance. A
record the run could not finish (``--max-seconds`` passed, retries exhausted, or the token
was refused) is counted as not accepted, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import email.utils
import io
import json
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TextIO

import httpx

from cardstream.stack_info import StackInfoError, load_stack_info

Format = Literal["csv", "json", "ndjson"]
BATCH_PATH: Final = "/v1/transactions/batch"
SINGLE_PATH: Final = "/v1/transactions"
CONTENT_TYPES: Final[dict[str, str]] = {
    "csv": "text/csv",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
}
# The published files' first column is an unnamed row index; JSON bodies leave it out.
INDEX_COLUMNS: Final = frozenset({"", "Unnamed: 0"})
MAX_BACKOFF_S: Final = 30.0
# How long an API instance whose connection failed is left out before it is tried again.
FAILOVER_S: Final = 5.0
PROGRESS_INTERVAL_S: Final = 0.5


@dataclass(slots=True)
class Record:
    """One CSV row as read: its values in file order and its trans_num (may be empty)."""

    values: list[str]
    trans_num: str


@dataclass
class ReplaySummary:
    """Outcome of a replay: every record read is accepted, rejected or not accepted."""

    records: int = 0
    accepted: int = 0
    rejected: int = 0
    not_accepted: int = 0
    rejected_reasons: Counter[str] = field(default_factory=Counter)
    accepted_trans_nums: set[str] = field(default_factory=set)
    # Records a 503 named as not accepted (each was resent), when trans_nums are collected.
    named_not_accepted: set[str] = field(default_factory=set)
    requests: int = 0
    throttled: int = 0
    retried_records: int = 0
    elapsed_s: float = 0.0
    aborted: str | None = None

    @property
    def complete(self) -> bool:
        """True when every record got a definitive answer (accepted or rejected)."""
        return self.not_accepted == 0 and self.aborted is None

    @property
    def throughput(self) -> float:
        """Finished records per second of wall time."""
        done = self.accepted + self.rejected
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def render(self) -> str:
        """The end-of-run report printed by the command."""
        lines = [f"accepted:     {self.accepted:,}", f"rejected:     {self.rejected:,}"]
        for reason, count in sorted(self.rejected_reasons.items(), key=lambda i: (-i[1], i[0])):
            lines.append(f"  {count:>8,}  {reason}")
        lines.append(f"not accepted: {self.not_accepted:,}")
        lines.append(
            f"throughput:   {self.throughput:,.1f} records/s over {self.elapsed_s:.1f} s "
            f"({self.requests:,} requests, {self.throttled:,} answered 429/503, "
            f"{self.retried_records:,} records resent)"
        )
        if self.aborted:
            lines.append(f"aborted:      {self.aborted}")
        return "\n".join(lines)


class _Pacer:
    """Spaces sends so that records leave at ``rate`` per second on average."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, records: int) -> None:
        if not self._interval:
            return
        async with self._lock:
            now = time.monotonic()
            # Idle time is not saved up: after a pause the client does not burst.
            self._next = max(self._next, now)
            wait = self._next - now
            self._next += records * self._interval
        if wait > 0:
            await asyncio.sleep(wait)


def retry_after_seconds(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP-date)."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    current = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - current).total_seconds())


def _reason(errors: Any, fallback: str) -> str:
    # Field-level errors never carry the input values (the API's contract), so the first
    # one is safe to print and to count by.
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        name, message = first.get("field"), first.get("message") or first.get("type")
        return f"{name}: {message}" if name else str(message)
    return fallback


class _Instances:
    """The API instances a replay posts to: in turn, leaving out for ``FAILOVER_S`` one
    whose connection failed (all failed: the one that failed longest ago)."""

    def __init__(self, clients: list[httpx.AsyncClient]) -> None:
        self.clients = clients
        self._down_until = [0.0] * len(clients)
        self._next = 0

    def pick(self) -> int:
        now = time.monotonic()
        count = len(self.clients)
        for offset in range(count):
            index = (self._next + offset) % count
            if self._down_until[index] <= now:
                self._next = index + 1
                return index
        return min(range(count), key=self._down_until.__getitem__)

    def failed(self, index: int) -> bool:
        """Leave ``index`` out for a while; whether another instance is up meanwhile."""
        now = time.monotonic()
        self._down_until[index] = now + FAILOVER_S
        return any(until <= now for until in self._down_until)


class _Replayer:
    def __init__(
        self,
        instances: _Instances,
        header: list[str],
        *,
        fmt: Format,
        batch: int,
        pacer: _Pacer,
        deadline: float | None,
        max_retries: int,
        summary: ReplaySummary,
        collect_trans_nums: bool,
    ) -> None:
        self._instances = instances
        self._header = header
        self._keep = [i for i, name in enumerate(header) if name not in INDEX_COLUMNS]
        self._fmt = fmt
        self._batch = batch
        self._pacer = pacer
        self._deadline = deadline
        self._max_retries = max_retries
        self._summary = summary
        self._collect = collect_trans_nums
        self._rng = random.Random()
        self.in_flight = 0

    def _expired(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    async def _sleep(self, seconds: float) -> None:
        if self._deadline is not None:
            seconds = min(seconds, max(0.0, self._deadline - time.monotonic()))
        await asyncio.sleep(seconds)

    def _backoff(self, attempt: int) -> float:
        return min(MAX_BACKOFF_S, 0.2 * 2.0**attempt) * self._rng.uniform(0.5, 1.0)

    def _body(self, records: list[Record]) -> bytes:
        if self._fmt == "csv" and self._batch > 1:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(self._header)
            writer.writerows(r.values for r in records)
            return buffer.getvalue().encode()
        objects = [{self._header[i]: r.values[i] for i in self._keep} for r in records]
        if self._batch == 1:
            return json.dumps(objects[0]).encode()
        if self._fmt == "json":
            return json.dumps(objects).encode()
        return "".join(json.dumps(o) + "\n" for o in objects).encode()

    def _accept(self, record: Record, trans_num: Any) -> None:
        self._summary.accepted += 1
        if self._collect:
            self._summary.accepted_trans_nums.add(str(trans_num or record.trans_num))

    def _reject(self, count: int, reason: str) -> None:
        self._summary.rejected += count
        self._summary.rejected_reasons[reason] += count

    async def send(self, records: list[Record]) -> None:
        """Post ``records`` until each has a definitive outcome or the run gives up."""
        work: deque[list[Record]] = deque([records])
        attempt = 0
        while work:
            pending = work.popleft()
            if self._expired() or self._summary.aborted:
                self._summary.not_accepted += len(pending) + sum(len(w) for w in work)
                return
            await self._pacer.take(len(pending))
            single = self._batch == 1
            instance = self._instances.pick()
            try:
                response = await self._instances.clients[instance].post(
                    SINGLE_PATH if single else BATCH_PATH,
                    content=self._body(pending),
                    headers={
                        "Content-Type": "application/json" if single else CONTENT_TYPES[self._fmt]
                    },
                )
            except httpx.TransportError as exc:
                attempt += 1
                if attempt > self._max_retries:
                    self._summary.not_accepted += len(pending)
                    self._summary.aborted = self._summary.aborted or (
                        f"giving up after {self._max_retries} retries: {type(exc).__name__}"
                    )
                    continue
                self._summary.retried_records += len(pending)
                work.appendleft(pending)
                if not self._instances.failed(instance):
                    await self._sleep(self._backoff(attempt))
                continue
            finally:
                self._summary.requests += 1
            retry = self._handle(response, pending, work)
            if retry is not None:
                attempt += 1
                await self._sleep(retry if retry >= 0 else self._backoff(attempt))

    def _handle(
        self, response: httpx.Response, pending: list[Record], work: deque[list[Record]]
    ) -> float | None:
        """Record outcomes; returns seconds to wait before the next send (-1: backoff)."""
        status = response.status_code
        body = _json_body(response)
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        if status in (200, 202) and self._batch == 1:
            self._accept(pending[0], body.get("trans_num"))
            return None
        if status == 200:
            self._apply_results(body.get("results"), pending, work, final=True)
            return None
        if status == 503 and isinstance(body.get("results"), list):
            self._summary.throttled += 1
            self._apply_results(body["results"], pending, work, final=False)
            return wait if wait is not None else -1
        if status in (429, 503):
            self._summary.throttled += 1
            return self._resend(pending, work, wait)
        if status == 413 and len(pending) > 1:
            middle = len(pending) // 2
            work.appendleft(pending[middle:])
            work.appendleft(pending[:middle])
            return None
        if status in (400, 413, 422):
            self._reject(
                len(pending),
                _reason(body.get("errors"), str(body.get("detail") or f"HTTP {status}")),
            )
            return None
        if status in (401, 403, 404, 415):
            self._summary.aborted = f"HTTP {status}: {body.get('detail') or response.reason_phrase}"
            self._summary.not_accepted += len(pending)
            return None
        return self._resend(pending, work, wait)

    def _resend(
        self, pending: list[Record], work: deque[list[Record]], wait: float | None
    ) -> float:
        self._summary.retried_records += len(pending)
        work.appendleft(pending)
        return wait if wait is not None else -1

    def _apply_results(
        self, results: Any, pending: list[Record], work: deque[list[Record]], *, final: bool
    ) -> None:
        if not isinstance(results, list):
            results = []
        by_index: dict[int, dict[str, Any]] = {}
        for item in results:
            if isinstance(item, dict) and isinstance(item.get("index"), int):
                by_index[item["index"]] = item
        again: list[Record] = []
        for position, record in enumerate(pending):
            item = by_index.get(position, {})
            status = item.get("status")
            if status == "accepted":
                self._accept(record, item.get("trans_num"))
            elif status == "rejected":
                self._reject(1, _reason(item.get("errors"), "rejected"))
            elif final:
                # A 200 that does not account for a record: it has no definitive outcome.
                self._summary.not_accepted += 1
            else:
                again.append(record)
                if self._collect:
                    self._summary.named_not_accepted.add(
                        str(item.get("trans_num") or record.trans_num)
                    )
        if again:
            self._summary.retried_records += len(again)
            work.appendleft(again)


def _json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def read_batches(handle: TextIO, batch: int) -> tuple[list[str], Iterator[list[Record]]]:
    """The CSV header and an iterator of batches of records, read lazily from ``handle``."""
    reader = csv.reader(handle)
    try:
        header = [name.lstrip("\ufeff") for name in next(reader)]
    except StopIteration:
        return [], iter(())
    position = header.index("trans_num") if "trans_num" in header else None

    def batches() -> Iterator[list[Record]]:
        chunk: list[Record] = []
        for values in reader:
            if not values:
                continue
            trans_num = values[position] if position is not None and position < len(values) else ""
            chunk.append(Record(values, trans_num))
            if len(chunk) >= batch:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    return header, batches()


async def replay_file(
    path: Path,
    *,
    url: str | Sequence[str],
    token: str,
    rate: float = 1000.0,
    batch: int = 500,
    fmt: Format = "csv",
    max_seconds: float | None = None,
    concurrency: int = 4,
    max_retries: int = 8,
    timeout_s: float = 30.0,
    progress: TextIO | None = None,
    collect_trans_nums: bool = True,
) -> ReplaySummary:
    """Post the Kaggle-format CSV at ``path`` to the API at ``url`` (one URL, or those of
    several instances of the API); see the module doc.

    ``rate`` is in records per second (0: as fast as the API answers), ``concurrency`` the
    number of requests in flight. ``progress``, when given, receives a single updating line.
    """
    if batch < 1:
        raise ValueError("batch must be >= 1")
    summary = ReplaySummary()
    started = time.monotonic()
    deadline = started + max_seconds if max_seconds is not None else None
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise ValueError("at least one URL is needed")
    with path.open(newline="", encoding="utf-8") as handle:
        header, batches = read_batches(handle, batch)
        async with contextlib.AsyncExitStack() as clients:
            instances = _Instances(
                [
                    await clients.enter_async_context(
                        httpx.AsyncClient(
                            base_url=u.rstrip("/"),
                            headers=headers,
                            timeout=timeout_s,
                            limits=limits,
                        )
                    )
                    for u in urls
                ]
            )
            replayer = _Replayer(
                instances,
                header,
                fmt=fmt,
                batch=batch,
                pacer=_Pacer(rate),
                deadline=deadline,
                max_retries=max_retries,
                summary=summary,
                collect_trans_nums=collect_trans_nums,
            )

            async def worker() -> None:
                # Batches are taken one at a time, so at most ``concurrency`` are in memory.
                for records in batches:
                    summary.records += len(records)
                    await replayer.send(records)

            reporter = (
                asyncio.create_task(_report_progress(summary, started, progress))
                if progress is not None
                else None
            )
            try:
                await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
            finally:
                if reporter is not None:
                    reporter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reporter
    summary.elapsed_s = time.monotonic() - started
    if progress is not None:
        _progress_line(summary, started, progress)
        progress.write("\n")
        progress.flush()
    return summary


def _progress_line(summary: ReplaySummary, started: float, out: TextIO) -> None:
    elapsed = max(time.monotonic() - started, 1e-9)
    done = summary.accepted + summary.rejected
    out.write(
        f"\rread {summary.records:,}  accepted {summary.accepted:,}  rejected "
        f"{summary.rejected:,}  throttled {summary.throttled:,}  {done / elapsed:,.0f} rec/s  "
        f"{elapsed:,.0f}s "
    )
    out.flush()


async def _report_progress(summary: ReplaySummary, started: float, out: TextIO) -> None:
    while True:
        _progress_line(summary, started, out)
        await asyncio.sleep(PROGRESS_INTERVAL_S)


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError("must be >= 0")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cardstream replay``."""
    parser.add_argument("file", type=Path, help="Kaggle-format CSV (published or generated)")
    parser.add_argument(
        "--rate",
        type=_positive(float),
        default=1000.0,
        help="target records per second (0: unpaced; default 1000)",
    )
    parser.add_argument(
        "--batch",
        type=_positive(int),
        default=500,
        help="records per request; 1 posts to /v1/transactions (default 500)",
    )
    parser.add_argument(
        "--url",
        action="append",
        help="API base URL; repeat it for several instances of the API "
        "(default: the API instances in stack.json)",
    )
    parser.add_argument("--token", help="bearer token (default: token from stack.json)")
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=("csv", "json", "ndjson"),
        default="csv",
        help="request body format for batches (default csv)",
    )
    parser.add_argument(
        "--max-seconds",
        type=_positive(float),
        help="stop after this long; unfinished records count as not accepted",
    )
    parser.add_argument(
        "--concurrency", type=_positive(int), default=4, help="requests in flight (default 4)"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".cardstream"),
        help="where stack.json is (default .cardstream)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def run(args: argparse.Namespace) -> int:
    """Replay the file; 0 when every record got a definitive outcome."""
    url, token = args.url, args.token
    if url is None or token is None:
        try:
            info = load_stack_info(args.state_dir)
        except StackInfoError as exc:
            print(
                f"cardstream replay: give --url and --token, or start the stack: {exc}",
                file=sys.stderr,
            )
            return 2
        url = url or [str(u) for u in info.get("api_urls") or [info["api_url"]]]
        token = token or str(info["token"])
    if args.batch < 1:
        print("cardstream replay: --batch must be at least 1", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"cardstream replay: no such file: {args.file}", file=sys.stderr)
        return 2
    summary = asyncio.run(
        replay_file(
            args.file,
            url=url,
            token=token,
            rate=args.rate,
            batch=args.batch,
            fmt=args.fmt,
            max_seconds=args.max_seconds,
            concurrency=max(1, args.concurrency),
            progress=None if args.quiet else sys.stderr,
            collect_trans_nums=False,
        )
    )
    print(summary.render())
    return 0 if summary.complete else 1
