"""The local stack as a newcomer runs it: real processes, real PostgreSQL, moto in server mode.

These tests assert the pipeline's one promise on real data (every accepted transaction in
PostgreSQL exactly once) and scan everything the run wrote for the card numbers it was fed.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import pytest
from local_stack_texts import database_texts, log_texts, s3_texts, stream_texts

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DIGIT_RUN = re.compile(r"(?<!\d)\d{11,19}(?!\d)")


def _up(state: Path, *extra: str) -> subprocess.Popen[bytes]:
    with (state.parent / "up.log").open("wb") as log:
        return _popen_up(state, log, *extra)


def _popen_up(
    state: Path, log: Any, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cardstream.cli",
            "up",
            "--state-dir",
            str(state),
            "--api-port",
            "0",
            "--dashboard-port",
            "0",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )


def _wait_for(path: Path, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            return
        if process.poll() is not None:
            log = (path.parent.parent / "up.log").read_text(errors="replace")
            raise AssertionError(f"cardstream up exited with {process.returncode}:\n{log[-4000:]}")
        time.sleep(0.5)
    raise AssertionError(f"{path} did not appear within {timeout_s}s")


def _pans(csv_path: Path) -> set[str]:
    with csv_path.open(newline="") as handle:
        return {row["cc_num"] for row in csv.DictReader(handle)}


def _leaks(text: str, pans: set[str]) -> set[str]:
    return {run for run in DIGIT_RUN.findall(text) if run in pans}


def test_demo_run_loads_every_row_once_and_never_leaks_a_card_number(tmp_path: Path) -> None:
    state = tmp_path / "state"
    process = _up(state, "--demo-rows", "5000", "--shards", "2", "--writers", "2")
    try:
        _wait_for(state / "demo-summary.json", process, timeout_s=600)
        summary = json.loads((state / "demo-summary.json").read_text())
        info = json.loads((state / "stack.json").read_text())
        assert summary["accepted"] == 5000, summary
        assert summary["complete"], summary

        with psycopg.connect(info["admin_database_url"]) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT trans_num) FROM cardstream.transaction"
            ).fetchone()
        assert row == (5000, 5000)

        pans = _pans(state / "demo.csv")
        assert len(pans) > 20
        scanned = 0
        for source in (
            stream_texts(info),
            s3_texts(info),
            database_texts(info["admin_database_url"]),
            log_texts(state),
        ):
            for where, text in source:
                scanned += 1
                assert not _leaks(text, pans), f"card number in clear in {where}"
        assert scanned > 5000

        # The one dashboard link printed signs the browser in on its way; no URL holds a token.
        up_log = (tmp_path / "up.log").read_text(errors="replace")
        (link,) = re.findall(r"^  Dashboard +(\S+)$", up_log, flags=re.MULTILINE)
        with httpx.Client(follow_redirects=True, timeout=30) as browser:
            signed_in = browser.get(link)
            page = browser.get(link)
        assert signed_in.status_code == 200, signed_in.text
        assert page.status_code == 200
        assert "Real Time Credit Card Fraud Monitoring" in page.text
        session = browser.cookies["cardstream_dashboard"]
        visited = [str(r.url) for r in signed_in.history] + [str(signed_in.url), link]
        assert not [url for url in visited if session in url or "token=" in url]
        assert "token=" not in up_log
        pids = [pid for pid in info["processes"].values() if pid]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        status = process.wait(120)
    assert status == 0, (tmp_path / "up.log").read_text()[-3000:]
    # Ctrl-C stopped every process it started.
    assert not [
        pid
        for pid in pids
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert not (state / "stack.json").exists()


def test_exit_when_loaded_exits_zero_with_every_row_loaded(tmp_path: Path) -> None:
    state = tmp_path / "state"
    process = _up(state, "--demo-rows", "5000", "--exit-when-loaded", "--timeout", "400")
    status = process.wait(600)
    log = (tmp_path / "up.log").read_text(errors="replace")
    assert status == 0, log[-4000:]
    summary = json.loads((state / "demo-summary.json").read_text())
    assert summary["complete"]
    assert summary["loaded"] == summary["accepted"] == 5000
    assert "each exactly once" in log


def test_a_stack_that_cannot_start_stops_what_it_started(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = dict(os.environ, WRITER_FLUSH_MAX_RECORDS="not-a-number")
    command = [sys.executable, "-m", "cardstream.cli", "up", "--state-dir", str(state)]
    with (tmp_path / "up.log").open("wb") as log:
        process = subprocess.Popen(
            [*command, "--api-port", "0", "--dashboard-port", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    status = process.wait(300)
    output = (tmp_path / "up.log").read_text(errors="replace")
    assert status == 1
    assert "WRITER_FLUSH_MAX_RECORDS" in output
    assert not (state / "stack.json").exists()
    # Nothing it started is left running.
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(state) in " ".join(p.info["cmdline"] or [])
    ]


def _leases_held(base_url: str) -> int:
    text = httpx.get(f"{base_url}/metrics", timeout=5).text
    match = re.search(r"^cardstream_writer_leases_held (\S+)$", text, re.MULTILINE)
    return int(float(match.group(1))) if match else -1


def _wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_writer_killed_during_a_replay_loses_nothing(tmp_path: Path) -> None:
    """With 4 shards and 2 writers, SIGKILL one writer while the replay runs; the
    survivor takes every shard and every accepted row still lands exactly once."""
    state = tmp_path / "state"
    failover_s = 6.0
    env = dict(os.environ, WRITER_FAILOVER_S=str(failover_s))
    with (tmp_path / "up.log").open("wb") as log:
        process = _popen_up(
            state,
            log,
            "--shards",
            "4",
            "--writers",
            "2",
            "--demo-rows",
            "20000",
            "--demo-rate",
            "1500",
            "--exit-when-loaded",
            "--timeout",
            "400",
            env=env,
        )
    try:
        _wait_for(state / "stack.json", process, timeout_s=300)
        info = json.loads((state / "stack.json").read_text())
        first, second = info["service_urls"]["stream-writer"]
        _wait_until(
            lambda: _leases_held(first) > 0 and _leases_held(first) + _leases_held(second) == 4,
            60,
            "the two writers to share the four shards",
        )
        _wait_until(lambda: _leases_held(second) > 0, 60, "the second writer to own shards")
        time.sleep(2)  # the replay is under way (20,000 rows at 1,500 rows/s)
        os.kill(info["processes"]["stream-writer-1"], signal.SIGKILL)
        killed_at = time.monotonic()
        _wait_until(lambda: _leases_held(second) == 4, 10 * failover_s, "the survivor to own all")
        print(f"survivor owned all four shards {time.monotonic() - killed_at:.1f}s after the kill")
        status = process.wait(600)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(120)
    assert status == 0, (tmp_path / "up.log").read_text(errors="replace")[-4000:]
    summary = json.loads((state / "demo-summary.json").read_text())
    assert summary["accepted"] == 20000
    assert summary["complete"], summary
