"""``cardstream evaluate FILE.csv [--labels FILE]``: measure the alert rules on labelled data.

The file goes through the real code path: a scratch database is bootstrapped with the real
migrations on the local PostgreSQL ($DATABASE_URL, a superuser URL, or an embedded server
in a temporary folder), the rows are tokenized and loaded in chunks by the loader's own
backfill and load code, as the loader role, with the rule engine as the after-insert hook
exactly as in the service. The alerts that land are then compared with the labels:

* labels: ``--labels`` names a ``trans_num,pattern`` file (``cardstream generate
  --labels-out``); without it the CSV's ``is_fraud`` column is the truth.
* per rule: precision is the share of its alerted transactions that are labelled fraud of
  any pattern; recall is the share of the transactions of its own pattern (the pattern of
  the same name) that it alerted, or of all labelled fraud when labels name no patterns.
* overall, per transaction: a transaction is flagged when any rule alerted it.

The scratch database is dropped afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import asyncpg
import psycopg
from prometheus_client import CollectorRegistry
from psycopg import sql

from cardstream.local.embedded_pg import scratch_postgres
from cardstream_monitoring.monitor import AlertMonitor
from cardstream_monitoring.rules import RULE_NAMES, RuleConfigError, Rules, load_rules
from cardstream_shared import resource_names as names
from cardstream_shared.pan import PanKeyring
from db_loader.backfill import csv_batches
from db_loader.loader import PartitionCache, load_batch
from db_loader.migrate import bootstrap, with_database

DEFAULT_CHUNK_ROWS: Final = 5_000


@dataclass
class Score:
    """Confusion counts of one rule (or of all rules together)."""

    alerted: int = 0
    true_positive: int = 0
    relevant: int = 0
    relevant_found: int = 0

    @property
    def precision(self) -> float:
        return self.true_positive / self.alerted if self.alerted else 0.0

    @property
    def recall(self) -> float:
        return self.relevant_found / self.relevant if self.relevant else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class Evaluation:
    """Everything ``cardstream evaluate`` reports."""

    transactions: int
    fraud: int
    alerts: int
    per_rule: dict[str, Score]
    overall: Score
    pattern_recall: dict[str, tuple[int, int]] = field(default_factory=dict)
    load_seconds: float = 0.0

    @property
    def alerts_per_1000(self) -> float:
        return 1000 * self.alerts / self.transactions if self.transactions else 0.0

    @property
    def flagged_per_1000(self) -> float:
        return 1000 * self.overall.alerted / self.transactions if self.transactions else 0.0

    def as_dict(self) -> dict[str, Any]:
        def score(s: Score) -> dict[str, Any]:
            return {
                "alerted_transactions": s.alerted,
                "true_positives": s.true_positive,
                "precision": round(s.precision, 4),
                "recall": round(s.recall, 4),
                "f1": round(s.f1, 4),
            }

        return {
            "transactions": self.transactions,
            "labelled_fraud": self.fraud,
            "alerts": self.alerts,
            "alerts_per_1000": round(self.alerts_per_1000, 2),
            "flagged_per_1000": round(self.flagged_per_1000, 2),
            "load_seconds": round(self.load_seconds, 2),
            "overall": score(self.overall),
            "rules": {name: score(s) for name, s in self.per_rule.items()},
            "pattern_recall": {
                p: {"found": f, "total": t} for p, (f, t) in self.pattern_recall.items()
            },
        }


def read_labels(path: Path) -> dict[str, str]:
    """``trans_num -> pattern`` from a ``trans_num,pattern`` CSV (pattern may be empty)."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "trans_num" not in reader.fieldnames:
            raise ValueError(f"{path}: expected a header with trans_num (and pattern)")
        return {row["trans_num"]: (row.get("pattern") or "fraud") for row in reader}


def score_alerts(
    transactions: int, alerts: list[tuple[str, str]], labels: dict[str, str], rules: Rules
) -> Evaluation:
    """Precision, recall and F1 of ``alerts`` (trans_num, rule) against ``labels``."""
    by_rule: dict[str, set[str]] = defaultdict(set)
    for trans_num, rule in alerts:
        by_rule[rule].add(trans_num)
    patterns = Counter(labels.values())
    per_rule: dict[str, Score] = {}
    for rule in RULE_NAMES:
        if rule not in rules.enabled() and rule not in by_rule:
            continue
        alerted = by_rule.get(rule, set())
        own = {t for t, p in labels.items() if p == rule} if rule in patterns else set(labels)
        per_rule[rule] = Score(
            alerted=len(alerted),
            true_positive=sum(1 for t in alerted if t in labels),
            relevant=len(own),
            relevant_found=len(own & alerted),
        )
    flagged = set().union(*by_rule.values()) if by_rule else set()
    overall = Score(
        alerted=len(flagged),
        true_positive=len(flagged & labels.keys()),
        relevant=len(labels),
        relevant_found=len(flagged & labels.keys()),
    )
    pattern_recall = {
        pattern: (sum(1 for t, p in labels.items() if p == pattern and t in flagged), total)
        for pattern, total in sorted(patterns.items())
    }
    return Evaluation(
        transactions=transactions,
        fraud=len(labels),
        alerts=len(alerts),
        per_rule=per_rule,
        overall=overall,
        pattern_recall=pattern_recall,
    )


def render(evaluation: Evaluation, out: TextIO) -> None:
    """The report as aligned text."""
    out.write(
        f"transactions {evaluation.transactions:,}, labelled fraud {evaluation.fraud:,}, "
        f"alerts {evaluation.alerts:,} ({evaluation.alerts_per_1000:.2f} per 1,000 "
        f"transactions; {evaluation.flagged_per_1000:.2f} flagged transactions per 1,000)\n"
    )
    out.write(f"load + rules: {evaluation.load_seconds:.1f} s\n\n")
    header = f"{'rule':<20}{'alerted':>9}{'true+':>8}{'precision':>11}{'recall':>9}{'F1':>7}"
    out.write(header + "\n" + "-" * len(header) + "\n")
    for name, s in [*evaluation.per_rule.items(), ("OVERALL", evaluation.overall)]:
        out.write(
            f"{name:<20}{s.alerted:>9,}{s.true_positive:>8,}{s.precision:>11.3f}"
            f"{s.recall:>9.3f}{s.f1:>7.3f}\n"
        )
    if evaluation.pattern_recall:
        out.write("\nrecall by injected pattern (any rule):\n")
        for pattern, (found, total) in evaluation.pattern_recall.items():
            share = found / total if total else 0.0
            out.write(f"  {pattern:<20}{found:>6,} / {total:<6,}{share:>7.3f}\n")


async def _load_and_alert(
    scratch_dsn: str, path: Path, rules: Rules, chunk_rows: int
) -> tuple[int, list[tuple[str, str]]]:
    keyring = PanKeyring.from_secret_string(PanKeyring.new_secret_string("eval"))
    monitor = AlertMonitor(rules, registry=CollectorRegistry())
    # Superuser login, loader privileges: the session switches to the loader role at
    # connect, so the load runs with exactly the service's grants without this command
    # setting a password on a role that a running local stack may be using.
    pool = await asyncpg.create_pool(
        scratch_dsn,
        min_size=1,
        max_size=2,
        server_settings={"role": names.DB_LOADER_ROLE, "application_name": "cardstream-evaluate"},
    )
    partitions = PartitionCache()
    try:
        for source, batch in csv_batches(path, keyring, chunk_rows=chunk_rows):
            result = await load_batch(
                pool, source, batch, partitions=partitions, hooks=[monitor.after_insert]
            )
            monitor.after_commit(result)
        transactions = await pool.fetchval("SELECT count(*) FROM cardstream.transaction")
        rows = await pool.fetch("SELECT trans_num, rule FROM cardstream.alert")
    finally:
        await pool.close()
    return int(transactions), [(r["trans_num"], r["rule"]) for r in rows]


def _labels_from_csv(path: Path) -> dict[str, str]:
    labels: dict[str, str] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            if str(row.get("is_fraud", "")).strip() == "1":
                labels[row["trans_num"]] = "fraud"
    return labels


def evaluate(
    path: Path,
    *,
    labels: dict[str, str],
    rules: Rules,
    admin_url: str,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    keep: bool = False,
) -> Evaluation:
    """Load ``path`` into a scratch database on ``admin_url``'s server and score the alerts."""
    database = f"cardstream_eval_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    scratch_dsn = with_database(admin_url, database)
    try:
        bootstrap(scratch_dsn, role_passwords={})
        started = time.perf_counter()
        transactions, alerts = asyncio.run(_load_and_alert(scratch_dsn, path, rules, chunk_rows))
        elapsed = time.perf_counter() - started
    finally:
        if not keep:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(database)
                    )
                )
    evaluation = score_alerts(transactions, alerts, labels, rules)
    evaluation.load_seconds = elapsed
    if keep:
        print(f"scratch database kept: {database}", file=sys.stderr)
    return evaluation


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cardstream evaluate``."""
    parser.add_argument("file", type=Path, help="Kaggle-format CSV (e.g. from cardstream generate)")
    parser.add_argument(
        "--labels",
        type=Path,
        help="trans_num,pattern CSV (cardstream generate --labels-out); default: is_fraud",
    )
    parser.add_argument(
        "--rules", type=Path, help="rule override file (same shape as default_rules.toml)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="superuser PostgreSQL URL for the scratch database (default: $DATABASE_URL, "
        "else an embedded PostgreSQL in a temporary folder)",
    )
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=DEFAULT_CHUNK_ROWS,
        help=f"rows per load transaction (default {DEFAULT_CHUNK_ROWS:,})",
    )
    parser.add_argument("--json-out", type=Path, help="also write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")


def run(args: argparse.Namespace) -> int:
    """``cardstream evaluate``: returns the process exit status."""
    if not args.file.is_file():
        print(f"cardstream evaluate: {args.file} is not a file", file=sys.stderr)
        return 2
    if args.chunk_rows < 1:
        print("cardstream evaluate: --chunk-rows must be >= 1", file=sys.stderr)
        return 2
    try:
        rules = load_rules(args.rules)
        labels = read_labels(args.labels) if args.labels else _labels_from_csv(args.file)
    except (RuleConfigError, ValueError, OSError) as exc:
        print(f"cardstream evaluate: {exc}", file=sys.stderr)
        return 2
    with scratch_postgres(args.database_url, prefix="cardstream-evaluate-") as admin_url:
        evaluation = evaluate(
            args.file,
            labels=labels,
            rules=rules,
            admin_url=admin_url,
            chunk_rows=args.chunk_rows,
            keep=args.keep,
        )
    render(evaluation, sys.stdout)
    if args.json_out:
        args.json_out.write_text(json.dumps(evaluation.as_dict(), indent=2) + "\n")
    return 0
