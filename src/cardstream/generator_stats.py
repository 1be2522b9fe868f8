"""Distributions of a Kaggle-format CSV, side by side with the published dataset's.

``python -m cardstream.generator_stats FILE.csv`` prints the tables that
docs/data-generator.md records: amount quantiles, category shares, the hour-of-day
histogram, the fraud rate and the number of cards and merchants. It streams the file, so it
also works on the published ``fraudTrain.csv`` for anyone who has it.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Final

from cardstream.generator_data import (
    CATEGORIES,
    PUBLISHED_CATEGORY_COUNTS,
    PUBLISHED_FRAUD_CATEGORY_COUNTS,
)

# fraudTrain.csv as published (1,296,675 rows): ``amt`` quantiles from pandas' describe().
PUBLISHED_ROWS: Final = 1_296_675
PUBLISHED_FRAUD_ROWS: Final = 7_506
PUBLISHED_AMOUNT: Final = {
    "min": 1.00,
    "p25": 9.65,
    "p50": 47.52,
    "p75": 83.14,
    "mean": 70.35,
    "max": 28_948.90,
}
PUBLISHED_CARDS: Final = 983
PUBLISHED_MERCHANTS: Final = 693
# Share of all rows by hour band and of fraud rows by hour band (approximate, fraudTrain).
PUBLISHED_HOUR_SHARE: Final = {"00-11": 0.39, "12-23": 0.61}
PUBLISHED_FRAUD_HOUR_SHARE: Final = {"22-23": 0.51, "00-03": 0.34, "04-21": 0.15}
QUANTILES: Final = (("p25", 0.25), ("p50", 0.50), ("p75", 0.75), ("p95", 0.95), ("p99", 0.99))


@dataclass
class Distribution:
    """What :func:`measure` counts in one pass over a file."""

    rows: int = 0
    fraud_rows: int = 0
    amounts: list[float] = field(default_factory=list)
    fraud_amounts: list[float] = field(default_factory=list)
    categories: Counter[str] = field(default_factory=Counter)
    fraud_categories: Counter[str] = field(default_factory=Counter)
    hours: Counter[int] = field(default_factory=Counter)
    fraud_hours: Counter[int] = field(default_factory=Counter)
    card_lengths: Counter[int] = field(default_factory=Counter)
    cards: set[str] = field(default_factory=set)
    merchants: set[str] = field(default_factory=set)

    @property
    def fraud_rate(self) -> float:
        return self.fraud_rows / self.rows if self.rows else 0.0

    def amount_summary(self, fraud: bool | None = None) -> dict[str, float]:
        """min, quantiles, mean and max of all (None), fraud (True) or legitimate amounts."""
        if fraud is None:
            values = sorted(self.amounts + self.fraud_amounts)
        elif fraud:
            values = sorted(self.fraud_amounts)
        else:
            values = sorted(self.amounts)
        if not values:
            return {}
        summary = {"min": values[0]}
        for name, q in QUANTILES:
            summary[name] = values[min(len(values) - 1, int(q * len(values)))]
        summary["mean"] = sum(values) / len(values)
        summary["max"] = values[-1]
        return summary

    def hour_band_share(self, bands: Mapping[str, Iterable[int]], fraud: bool) -> dict[str, float]:
        """Share of rows (or fraud rows) in each band of hours."""
        counts = self.fraud_hours if fraud else self.hours
        total = sum(counts.values()) or 1
        return {name: sum(counts[h] for h in hours) / total for name, hours in bands.items()}


def measure(lines: Iterable[str]) -> Distribution:
    """Count the distributions of a Kaggle-format CSV given as lines."""
    result = Distribution()
    reader = csv.DictReader(iter(lines))
    for row in reader:
        amount = float(Decimal(row["amt"]))
        hour = int(row["trans_date_trans_time"][11:13])
        fraud = row["is_fraud"] == "1"
        result.rows += 1
        result.categories[row["category"]] += 1
        result.hours[hour] += 1
        result.cards.add(row["cc_num"])
        result.card_lengths[len(row["cc_num"])] += 1
        result.merchants.add(row["merchant"])
        if fraud:
            result.fraud_rows += 1
            result.fraud_amounts.append(amount)
            result.fraud_categories[row["category"]] += 1
            result.fraud_hours[hour] += 1
        else:
            result.amounts.append(amount)
    return result


def report(dist: Distribution) -> str:
    """Markdown tables comparing ``dist`` with the published figures."""
    lines = [
        "| measure | generated | published (fraudTrain.csv) |",
        "|---|---|---|",
        f"| rows | {dist.rows:,} | {PUBLISHED_ROWS:,} |",
        f"| fraud rate | {dist.fraud_rate:.3%} | {PUBLISHED_FRAUD_ROWS / PUBLISHED_ROWS:.3%} |",
        f"| distinct cards | {len(dist.cards):,} | {PUBLISHED_CARDS:,} |",
        f"| distinct merchants | {len(dist.merchants):,} | {PUBLISHED_MERCHANTS:,} |",
    ]
    amounts = dist.amount_summary()
    for name in ("min", "p25", "p50", "p75", "p95", "p99", "mean", "max"):
        published = PUBLISHED_AMOUNT.get(name)
        shown = f"{published:,.2f}" if published is not None else "n/a"
        lines.append(f"| amt {name} | {amounts.get(name, 0.0):,.2f} | {shown} |")
    legit, fraud = dist.amount_summary(False), dist.amount_summary(True)
    lines.append(
        f"| amt median legit / fraud | {legit.get('p50', 0.0):,.2f} / "
        f"{fraud.get('p50', 0.0):,.2f} | ≈47 / ≈397 |"
    )
    lines += [
        "",
        "| category | share generated | share published | fraud share generated "
        "| fraud share published |",
        "|---|---|---|---|---|",
    ]
    published_total = sum(PUBLISHED_CATEGORY_COUNTS.values())
    for category in CATEGORIES:
        lines.append(
            f"| {category} | {dist.categories[category] / (dist.rows or 1):.1%} "
            f"| {PUBLISHED_CATEGORY_COUNTS[category] / published_total:.1%} "
            f"| {dist.fraud_categories[category] / (dist.fraud_rows or 1):.1%} "
            f"| {PUBLISHED_FRAUD_CATEGORY_COUNTS[category] / PUBLISHED_FRAUD_ROWS:.1%} |"
        )
    all_bands = {"00-11": range(12), "12-23": range(12, 24)}
    fraud_bands = {"22-23": range(22, 24), "00-03": range(4), "04-21": range(4, 22)}
    lines += ["", "| hours | generated | published |", "|---|---|---|"]
    for name, share in dist.hour_band_share(all_bands, fraud=False).items():
        lines.append(f"| all rows {name} | {share:.1%} | ≈{PUBLISHED_HOUR_SHARE[name]:.0%} |")
    for name, share in dist.hour_band_share(fraud_bands, fraud=True).items():
        lines.append(
            f"| fraud rows {name} | {share:.1%} | ≈{PUBLISHED_FRAUD_HOUR_SHARE[name]:.0%} |"
        )
    lines += ["", "| hour | rows | fraud rows |", "|---|---|---|"]
    lines += [f"| {h:02d} | {dist.hours[h]:,} | {dist.fraud_hours[h]:,} |" for h in range(24)]
    lines += ["", "| card number digits | rows |", "|---|---|"]
    lines += [f"| {n} | {dist.card_lengths[n]:,} |" for n in sorted(dist.card_lengths)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="a Kaggle-format CSV file")
    args = parser.parse_args(argv)
    with args.csv.open(newline="", encoding="utf-8") as handle:
        print(report(measure(handle)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
