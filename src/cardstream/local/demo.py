"""``cardstream up --demo-rows N``: generate N rows, replay them through the API, and
(with ``--exit-when-loaded``) wait until every accepted row is in PostgreSQL exactly once."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from cardstream.generator import write_csv
from cardstream.replay import replay_file


def _say(message: str) -> None:
    print(f"cardstream up: {message}", file=sys.stderr, flush=True)


def loaded_count(admin_dsn: str, trans_nums: list[str]) -> tuple[int, int]:
    """(distinct accepted trans_nums found, rows found) in cardstream.transaction."""
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT trans_num), count(*) FROM cardstream.transaction "
            "WHERE trans_num = ANY(%s)",
            (trans_nums,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def run_demo(args: argparse.Namespace, info: dict[str, Any]) -> int:
    """Generate, replay, and wait for the load; returns the exit status for ``up``."""
    state_dir = Path(info["state_dir"])
    csv_path = state_dir / "demo.csv"
    write_csv(csv_path, rows=args.demo_rows, seed=args.demo_seed)
    _say(f"generated {args.demo_rows} rows into {csv_path}; replaying through the API")
    started = time.monotonic()
    summary = await replay_file(
        csv_path,
        url=info["api_urls"],
        token=info["token"],
        rate=args.demo_rate,
        batch=args.demo_batch,
        # The whole demo, replay included, is bounded by --timeout: a stuck pipeline must not
        # keep the replay resending forever.
        max_seconds=args.timeout,
        progress=sys.stderr,
    )
    accepted = sorted(summary.accepted_trans_nums)
    _say(
        f"replay done: {len(accepted)} accepted, {summary.rejected} rejected, "
        f"{summary.not_accepted} not accepted"
    )
    deadline = started + args.timeout
    found = rows = 0
    while time.monotonic() < deadline:
        found, rows = await asyncio.to_thread(loaded_count, info["admin_database_url"], accepted)
        if found == len(accepted):
            break
        await asyncio.sleep(0.5)
    elapsed = time.monotonic() - started
    result = {
        "rows_generated": args.demo_rows,
        "accepted": len(accepted),
        "rejected": summary.rejected,
        "not_accepted": summary.not_accepted,
        "loaded": found,
        "rows_for_accepted": rows,
        "seconds": round(elapsed, 2),
        "complete": found == len(accepted) and rows == found,
    }
    partial = state_dir / "demo-summary.json.partial"
    partial.write_text(json.dumps(result, indent=2))
    partial.replace(state_dir / "demo-summary.json")  # readers never see half a file
    if result["complete"]:
        _say(
            f"all {found} accepted rows are in PostgreSQL, each exactly once "
            f"({elapsed:.1f}s from first post to last row loaded)"
        )
        return 0
    _say(
        f"after {elapsed:.0f}s only {found} of {len(accepted)} accepted rows are in PostgreSQL; "
        "see `cardstream status` and the logs under "
        f"{state_dir / 'logs'} (missing: {len(accepted) - found})"
    )
    return 1
