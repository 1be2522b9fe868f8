"""``cardstream evaluate`` end to end on generated, labelled data (real PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cardstream.cli import main
from cardstream.evaluate import evaluate, read_labels
from cardstream.generator import write_csv
from cardstream_monitoring.rules import load_rules

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("evaluate")
    csv_path, labels_path = folder / "rows.csv", folder / "labels.csv"
    # A fraud rate well above the default so that every pattern occurs in a small file.
    write_csv(csv_path, 4_000, 11, fraud_rate=0.05, labels_path=labels_path)
    return csv_path, labels_path


def test_evaluate_command_reports_per_rule_and_overall_figures(
    labelled: tuple[Path, Path],
    pg_admin_dsn: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    csv_path, labels_path = labelled
    out = tmp_path / "figures.json"
    argv = ["evaluate", str(csv_path), "--labels", str(labels_path), "--json-out", str(out)]
    assert main([*argv, "--database-url", pg_admin_dsn]) == 0
    printed = capsys.readouterr().out
    assert "OVERALL" in printed
    assert "per 1,000 transactions" in printed
    figures = json.loads(out.read_text())
    assert figures["transactions"] == 4_000
    assert figures["labelled_fraud"] == len(read_labels(labels_path))
    assert set(figures["rules"]) == set(load_rules().enabled())
    overall = figures["overall"]
    assert overall["recall"] >= 0.8
    assert overall["precision"] >= 0.5


def test_object_boundaries_do_not_change_the_alerts(
    labelled: tuple[Path, Path], pg_admin_dsn: str
) -> None:
    csv_path, labels_path = labelled
    labels = read_labels(labels_path)
    rules = load_rules()
    whole = evaluate(csv_path, labels=labels, rules=rules, admin_url=pg_admin_dsn, chunk_rows=4_000)
    pieces = evaluate(csv_path, labels=labels, rules=rules, admin_url=pg_admin_dsn, chunk_rows=250)
    assert whole.alerts > 0
    assert whole.as_dict()["rules"] == pieces.as_dict()["rules"]
    assert whole.alerts == pieces.alerts


def test_evaluate_refuses_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(tmp_path / "nope.csv")]) == 2
    assert "is not a file" in capsys.readouterr().err
