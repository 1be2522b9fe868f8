"""cardstream generate: the file's format and quirks, determinism, and the injected patterns.

One 50,000-row file (with labels) is generated once for the module and examined the way a
consumer would read it: with the csv module, as text.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from cardstream.cli import main
from cardstream.generator import CSV_HEADER, iter_rows, write_csv, write_rows
from cardstream.generator_patterns import PATTERNS, haversine_km
from cardstream_shared.pan import luhn_valid
from cardstream_shared.transaction_input import Rejected, read_csv

pytestmark = pytest.mark.unit

ROWS = 50_000


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("gen")
    path, labels = folder / "tx.csv", folder / "labels.csv"
    summary = write_csv(path, ROWS, seed=11, labels_path=labels)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with labels.open(newline="") as handle:
        label_rows = list(csv.DictReader(handle))
    return {
        "path": path,
        "text": path.read_text(),
        "rows": rows,
        "labels": {r["trans_num"]: r["pattern"] for r in label_rows},
        "summary": summary,
    }


def _when(row: dict[str, str]) -> dt.datetime:
    return dt.datetime.strptime(row["trans_date_trans_time"], "%Y-%m-%d %H:%M:%S")


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    write_csv(first, 3000, seed=5)
    write_csv(second, 3000, seed=5)
    write_csv(other, 3000, seed=6)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_rows_pass_ingest_validation(generated: dict[str, Any]) -> None:
    # The first 10,000 rows and every labelled row; the hypothesis test covers other seeds.
    lines = generated["text"].splitlines(keepends=True)
    fraud = [i + 1 for i, r in enumerate(generated["rows"]) if r["is_fraud"] == "1"]
    chosen = [lines[0], *lines[1:10_001], *(lines[i] for i in fraud if i > 10_000)]
    outcomes = list(read_csv(chosen))
    assert len(outcomes) == len(chosen) - 1
    assert [o for o in outcomes if isinstance(o, Rejected)] == []


def test_published_format_quirks(generated: dict[str, Any]) -> None:
    text: str = generated["text"]
    rows: list[dict[str, str]] = generated["rows"]
    assert text.splitlines()[0] == ",".join(CSV_HEADER)
    assert text.splitlines()[0].startswith(",trans_date_trans_time,cc_num,merchant,")
    assert [int(r[""]) for r in rows] == list(range(ROWS))
    # Merchant names with commas are quoted, and every merchant has the "fraud_" prefix.
    assert any(line.split(",", 4)[3].startswith('"fraud_') for line in text.splitlines()[1:50])
    assert all(r["merchant"].startswith("fraud_") for r in rows)
    # Amounts always have two decimals; numbers are written as integers.
    assert all(len(r["amt"].split(".")[1]) == 2 for r in rows)
    zips = {r["zip"] for r in rows}
    assert all(z.isdigit() and not z.startswith("0") for z in zips)
    assert any(len(z) == 4 for z in zips), "New England zips lose their leading zero"
    times = [_when(r) for r in rows]
    assert times == sorted(times)


def test_card_numbers_are_luhn_valid_with_published_lengths(generated: dict[str, Any]) -> None:
    cards = {r["cc_num"] for r in generated["rows"]}
    assert all(luhn_valid(c) for c in cards)
    lengths = {len(c) for c in cards}
    assert lengths <= set(range(11, 20))
    # 11 digits: a 12-digit Maestro number whose leading zero the integer format dropped.
    assert {11, 12, 13, 14, 15, 16, 19} <= lengths
    assert 400 <= len(cards) <= 650


def test_unix_time_is_seven_calendar_years_before_the_timestamp(
    generated: dict[str, Any],
) -> None:
    for row in generated["rows"][::97]:
        when = _when(row)
        earlier = when.replace(year=when.year - 7)
        assert int(row["unix_time"]) == calendar.timegm(earlier.timetuple())


def test_legitimate_merchants_are_within_a_degree_of_home(generated: dict[str, Any]) -> None:
    for row in generated["rows"]:
        if row["is_fraud"] == "0":
            assert abs(float(row["merch_lat"]) - float(row["lat"])) <= 1.0 + 1e-6
            assert abs(float(row["merch_long"]) - float(row["long"])) <= 1.0 + 1e-6


def test_labels_match_fraud_rows_and_cover_every_pattern(generated: dict[str, Any]) -> None:
    rows: list[dict[str, str]] = generated["rows"]
    labels: dict[str, str] = generated["labels"]
    fraud = {r["trans_num"] for r in rows if r["is_fraud"] == "1"}
    assert set(labels) == fraud
    assert 0.005 <= len(fraud) / ROWS <= 0.007
    assert set(labels.values()) == set(PATTERNS)
    assert generated["summary"].fraud_rows == len(fraud)


def _by_pattern(generated: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in generated["rows"]:
        pattern = generated["labels"].get(row["trans_num"])
        if pattern:
            groups[pattern].append(row)
    return groups


def _distance(row: dict[str, str], other: dict[str, str] | None = None) -> float:
    lat, long = (
        (float(row["lat"]), float(row["long"]))
        if other is None
        else (float(other["merch_lat"]), float(other["merch_long"]))
    )
    return haversine_km(lat, long, float(row["merch_lat"]), float(row["merch_long"]))


def test_pattern_shapes_are_what_the_rules_look_for(generated: dict[str, Any]) -> None:
    groups = _by_pattern(generated)
    assert all(float(r["amt"]) < 5 for r in groups["card_testing"])
    assert all(9000 <= float(r["amt"]) < 10_000 for r in groups["structuring"])
    night = {22, 23, 0, 1, 2, 3}
    for row in groups["night_high_value"]:
        assert _when(row).hour in night
        assert row["category"] in {"grocery_pos", "shopping_net", "misc_net", "shopping_pos"}
        assert float(row["amt"]) >= 275
    assert all(_distance(r) >= 1000 for r in groups["far_from_home"])


def test_velocity_and_impossible_travel_are_visible_in_card_history(
    generated: dict[str, Any],
) -> None:
    history: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in generated["rows"]:
        history[row["cc_num"]].append(row)
    labels = generated["labels"]
    for card_rows in history.values():
        for position, row in enumerate(card_rows):
            pattern = labels.get(row["trans_num"])
            if pattern == "velocity":
                window = [
                    r for r in card_rows if abs((_when(r) - _when(row)).total_seconds()) <= 45 * 60
                ]
                assert len(window) >= 8
            if pattern == "impossible_travel":
                previous = card_rows[position - 1]
                hours = (_when(row) - _when(previous)).total_seconds() / 3600
                km = _distance(row, previous)
                assert hours <= 40 / 60
                assert km >= 1500
                assert km / max(hours, 1 / 3600) > 1000, "faster than an airliner"


def test_amount_spikes_dwarf_the_cards_own_history(generated: dict[str, Any]) -> None:
    spent: dict[str, list[float]] = defaultdict(list)
    checked = 0
    for row in generated["rows"]:
        pattern = generated["labels"].get(row["trans_num"])
        if pattern == "amount_spike":
            history = spent[row["cc_num"]]
            assert len(history) >= 5
            assert float(row["amt"]) >= 10 * (sum(history) / len(history))
            checked += 1
        elif row["is_fraud"] == "0":
            spent[row["cc_num"]].append(float(row["amt"]))
    assert checked > 0


def test_iter_rows_matches_the_file(generated: dict[str, Any]) -> None:
    head = [row.as_dict() for row, _ in zip(iter_rows(ROWS, seed=11), range(200), strict=False)]
    from_file = [{k: v for k, v in r.items() if k != ""} for r in generated["rows"][:200]]
    assert head == from_file


def test_zero_rows_is_a_header_only_file() -> None:
    buffer = io.StringIO()
    summary = write_rows(buffer, 0, seed=1)
    assert buffer.getvalue() == ",".join(CSV_HEADER) + "\n"
    assert summary.rows == 0


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, labels = tmp_path / "g.csv", tmp_path / "l.csv"
    argv = ["generate", "--rows", "500", "--seed", "3", "--out", str(out)]
    assert main([*argv, "--labels-out", str(labels), "--start", "2020-02-27"]) == 0
    assert "wrote 500 rows" in capsys.readouterr().err
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 500
    assert rows[0]["trans_date_trans_time"].startswith("2020-02-27")
    # 2020-02-29 has no counterpart in 2013: it maps to 2013-02-28 like the 28th does.
    leap = [r for r in rows if r["trans_date_trans_time"].startswith("2020-02-29")]
    assert leap
    assert all(
        dt.datetime.fromtimestamp(int(r["unix_time"]), dt.UTC).date() == dt.date(2013, 2, 28)
        for r in leap
    )
    assert labels.read_text().startswith("trans_num,pattern\n")


def test_start_before_1977_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["generate", "--rows", "5", "--out", str(tmp_path / "x.csv"), "--start", "1975-01-01"]
    assert main(argv) == 2
    assert "start must be in 1977 or later" in capsys.readouterr().err
