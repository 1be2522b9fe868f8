"""cardstream replay against a small real HTTP server that speaks the ingest-api contract.

The server is the client's peer, not the component under test: it validates records with
the shared decoding door, stores accepted trans_nums, and answers 429 / 503 / 413 on a script,
so the tests can check what a merchant would see (exit status, report) and what the API
received (every valid record stored exactly once, only not-accepted records resent).
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections import Counter, deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cardstream.cli import main
from cardstream.generator import write_csv
from cardstream.local.ports import free_port
from cardstream.replay import replay_file
from cardstream_shared.transaction_input import Rejected, read_batch, read_transaction

TOKEN = "test-token"

pytestmark = pytest.mark.functional


class FakeApi:
    """State and script of the fake ingest-api."""

    def __init__(self, script: list[str] | None = None, *, always: str = "ok") -> None:
        self.script: deque[str] = deque(script or [])
        self.always = always
        self.max_records: int | None = None
        self.lock = threading.Lock()
        self.stored: Counter[str] = Counter()
        self.seen: Counter[str] = Counter()
        self.not_accepted: Counter[str] = Counter()
        self.responses: Counter[int] = Counter()
        self.content_types: set[str] = set()
        self.requests = 0

    def action(self) -> str:
        with self.lock:
            return self.script.popleft() if self.script else self.always

    def handle(self, path: str, content_type: str, body: bytes, auth: str) -> tuple[int, Any]:
        if auth != f"Bearer {TOKEN}":
            return 401, {"title": "Unauthorized", "status": 401, "detail": "invalid token"}
        self.content_types.add(content_type)
        with self.lock:
            self.requests += 1
        if self.always == "die":
            return 0, None  # the instance is killed with the request in flight
        if path == "/v1/transactions":
            return self._single(body)
        form = {"text/csv": "csv", "application/x-ndjson": "ndjson"}.get(content_type, "json")
        records = read_batch(body, form, max_records=1_000_000)  # type: ignore[arg-type]
        if self.max_records is not None and len(records) > self.max_records:
            return 413, {"status": 413, "detail": f"at most {self.max_records} records"}
        action = self.action()
        if action == "429":
            return 429, {"status": 429, "detail": "rate limit exceeded"}
        results: list[dict[str, Any]] = []
        first_valid = True
        with self.lock:
            for index, record in enumerate(records):
                trans_num = str(record.trans_num)
                self.seen[trans_num] += 1
                if isinstance(record, Rejected):
                    results.append(
                        {
                            "index": index,
                            "trans_num": trans_num,
                            "status": "rejected",
                            "errors": [e.as_dict() for e in record.errors],
                        }
                    )
                    continue
                if action == "503-all" or (action == "503-partial" and first_valid):
                    first_valid = False
                    self.not_accepted[trans_num] += 1
                    results.append(
                        {"index": index, "trans_num": trans_num, "status": "not_accepted"}
                    )
                    continue
                first_valid = False
                self.stored[trans_num] += 1
                results.append(
                    {
                        "index": index,
                        "trans_num": trans_num,
                        "status": "accepted",
                        "shard_id": "shardId-000000000000",
                        "sequence_number": str(sum(self.stored.values())),
                    }
                )
        counts = Counter(r["status"] for r in results)
        payload = {
            "accepted": counts["accepted"],
            "rejected": counts["rejected"],
            "results": results,
        }
        if counts["not_accepted"]:
            return 503, {"status": 503, "detail": "not stored in time", **payload}
        return 200, payload

    def _single(self, body: bytes) -> tuple[int, Any]:
        action = self.action()
        if action == "429":
            return 429, {"status": 429, "detail": "rate limit exceeded"}
        checked = read_transaction(body)
        trans_num = str(checked.trans_num)
        with self.lock:
            self.seen[trans_num] += 1
            if isinstance(checked, Rejected):
                return 422, {
                    "status": 422,
                    "detail": "the transaction is not valid",
                    "errors": [e.as_dict() for e in checked.errors],
                    "trans_num": trans_num,
                }
            if action.startswith("503"):
                self.not_accepted[trans_num] += 1
                return 503, {
                    "detail": "not stored in time",
                    "trans_num": trans_num,
                    "status": "not_accepted",
                }
            self.stored[trans_num] += 1
        return 202, {
            "trans_num": trans_num,
            "status": "accepted",
            "shard_id": "s",
            "sequence_number": "1",
        }


def _handler(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, payload = api.handle(
                self.path,
                self.headers.get("Content-Type", ""),
                body,
                self.headers.get("Authorization", ""),
            )
            if status == 0:
                self.close_connection = True
                return
            with api.lock:
                api.responses[status] += 1
            data = json.dumps(payload).encode()
            self.send_response(status)
            kind = "application/json" if status < 400 else "application/problem+json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            if status in (429, 503):
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(api: FakeApi) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _generated(
    tmp_path: Path, rows: int, *, corrupt: dict[int, tuple[str, str]] | None = None
) -> tuple[Path, set[str]]:
    """A generated CSV, with some fields replaced; returns the file and valid trans_nums."""
    path = tmp_path / "tx.csv"
    write_csv(path, rows, seed=7)
    with path.open(newline="") as handle:
        table = list(csv.reader(handle))
    header = table[0]
    valid = set()
    for number, row in enumerate(table[1:]):
        if corrupt and number in corrupt:
            name, value = corrupt[number]
            row[header.index(name)] = value
        else:
            valid.add(row[header.index("trans_num")])
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(table)
    path.write_text(buffer.getvalue())
    return path, valid


def _bad_luhn(path: Path, row: int) -> str:
    with path.open(newline="") as handle:
        number = list(csv.DictReader(handle))[row]["cc_num"]
    return number[:-1] + str((int(number[-1]) + 1) % 10)


def _replay(path: Path, url: str, *extra: str) -> int:
    return main(
        ["replay", str(path), "--url", url, "--token", TOKEN, "--rate", "0", "--quiet", *extra]
    )


def test_csv_batches_survive_throttling_and_partial_failures(
    tmp_path: Path, serve: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _generated(tmp_path, 240)
    corrupt = {
        5: ("cc_num", _bad_luhn(path, 5)),
        50: ("cc_num", _bad_luhn(path, 50)),
        100: ("state", "Xx"),
    }
    path, valid = _generated(tmp_path, 240, corrupt=corrupt)
    api = FakeApi(["429", "503-partial", "ok", "503-partial"])
    url = serve(api)

    status = _replay(path, url, "--batch", "50", "--concurrency", "2")

    out = capsys.readouterr().out
    assert status == 0
    assert set(api.stored) == valid
    assert set(api.stored.values()) == {1}
    assert api.responses[429] == 1
    assert api.responses[503] == 2
    # Only the records the API reported not_accepted were sent again.
    for trans_num, times in api.seen.items():
        assert times == 1 + api.not_accepted[trans_num]
    assert "accepted:     237" in out
    assert "rejected:     3" in out
    assert "2  cc_num: is not a valid card number (Luhn check failed)" in out
    assert "1  state: String should match pattern" in out
    assert "not accepted: 0" in out


@pytest.mark.parametrize(
    ("fmt", "content_type"), [("json", "application/json"), ("ndjson", "application/x-ndjson")]
)
def test_json_bodies(tmp_path: Path, serve: Any, fmt: str, content_type: str) -> None:
    path, valid = _generated(tmp_path, 60)
    api = FakeApi(["503-partial"])
    url = serve(api)

    assert _replay(path, url, "--batch", "25", "--format", fmt) == 0

    assert set(api.stored) == valid
    assert set(api.stored.values()) == {1}
    assert api.content_types == {content_type}


def test_batch_of_one_posts_single_transactions(
    tmp_path: Path, serve: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _generated(tmp_path, 20)
    path, valid = _generated(tmp_path, 20, corrupt={3: ("cc_num", _bad_luhn(path, 3))})
    api = FakeApi(["503", "429"])
    url = serve(api)

    assert _replay(path, url, "--batch", "1", "--concurrency", "1") == 0

    assert set(api.stored) == valid
    assert set(api.stored.values()) == {1}
    assert api.content_types == {"application/json"}
    assert "rejected:     1" in capsys.readouterr().out


def test_too_large_requests_are_split(tmp_path: Path, serve: Any) -> None:
    path, valid = _generated(tmp_path, 50)
    api = FakeApi()
    api.max_records = 10
    url = serve(api)

    assert _replay(path, url, "--batch", "25") == 0

    assert set(api.stored) == valid
    assert api.responses[413] >= 2


def test_gives_up_at_max_seconds_without_claiming_success(
    tmp_path: Path, serve: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _generated(tmp_path, 30)
    api = FakeApi(always="503-all")
    url = serve(api)

    assert _replay(path, url, "--batch", "10", "--max-seconds", "0.3") == 1

    assert not api.stored
    assert "not accepted: 30" in capsys.readouterr().out


def test_refused_token_stops_the_run(
    tmp_path: Path, serve: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _generated(tmp_path, 30)
    api = FakeApi()
    url = serve(api)

    status = main(
        [
            "replay",
            str(path),
            "--url",
            url,
            "--token",
            "wrong",
            "--quiet",
            "--batch",
            "10",
            "--concurrency",
            "1",
        ]
    )

    out = capsys.readouterr().out
    assert status == 1
    assert not api.stored
    assert "aborted:      HTTP 401: invalid token" in out
    assert "not accepted: 30" in out


def test_an_instance_that_fails_is_left_out_and_its_records_go_to_the_others(
    tmp_path: Path, serve: Any
) -> None:
    path, valid = _generated(tmp_path, 200)
    dying, healthy = FakeApi(always="die"), FakeApi()
    nobody = f"http://127.0.0.1:{free_port()}"  # an instance that is gone: refused

    assert (
        _replay(
            path,
            serve(dying),
            "--url",
            nobody,
            "--url",
            serve(healthy),
            "--batch",
            "10",
            "--concurrency",
            "2",
        )
        == 0
    )

    assert set(healthy.stored) == valid
    assert set(healthy.stored.values()) == {1}
    # Each failed instance was tried at most once per request in flight, then left out.
    assert dying.requests <= 2


def test_url_and_token_default_from_stack_json(tmp_path: Path, serve: Any) -> None:
    path, valid = _generated(tmp_path, 20)
    api = FakeApi()
    url = serve(api)
    state = tmp_path / "state"
    state.mkdir()
    (state / "stack.json").write_text(json.dumps({"api_url": url, "token": TOKEN}))

    assert main(["replay", str(path), "--state-dir", str(state), "--quiet"]) == 0

    assert set(api.stored) == valid


def test_without_url_or_stack_json_it_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _generated(tmp_path, 5)

    assert main(["replay", str(path), "--state-dir", str(tmp_path / "none")]) == 2
    assert "stack.json does not exist" in capsys.readouterr().err


async def test_library_call_reports_progress_and_accepted_trans_nums(
    tmp_path: Path, serve: Any
) -> None:
    path, valid = _generated(tmp_path, 40)
    api = FakeApi(["503-partial", "ok", "503-all"])
    url = serve(api)
    progress = io.StringIO()

    summary = await replay_file(
        path, url=url, token=TOKEN, rate=0, batch=15, concurrency=1, progress=progress
    )

    assert summary.complete
    assert summary.accepted_trans_nums == valid
    assert summary.named_not_accepted == set(api.not_accepted)
    assert len(summary.named_not_accepted) == 16  # one of the first batch, all of the third
    assert summary.records == 40
    assert progress.getvalue().startswith("\rread ")
    assert "accepted 40" in progress.getvalue()
