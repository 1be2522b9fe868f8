"""Generated distributions against the published dataset's (docs/data-generator.md).

The tolerances are the ones the document states; the figures themselves are printed by
``python -m cardstream.generator_stats FILE``.
"""

from __future__ import annotations

import io

import pytest

from cardstream.generator import write_rows
from cardstream.generator_data import PUBLISHED_CATEGORY_COUNTS
from cardstream.generator_stats import PUBLISHED_AMOUNT, Distribution, measure

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def dist() -> Distribution:
    buffer = io.StringIO()
    write_rows(buffer, 40_000, seed=2024)
    buffer.seek(0)
    return measure(buffer)


def test_fraud_rate_is_close_to_published(dist: Distribution) -> None:
    assert 0.005 <= dist.fraud_rate <= 0.007


def test_amount_quantiles_are_close_to_published(dist: Distribution) -> None:
    amounts = dist.amount_summary()
    assert amounts["min"] == PUBLISHED_AMOUNT["min"]
    for name in ("p25", "p50", "p75", "mean"):
        assert amounts[name] == pytest.approx(PUBLISHED_AMOUNT[name], rel=0.2), name
    # Heavy tail: the largest legitimate purchases are hundreds of times the median.
    assert amounts["max"] > 100 * amounts["p50"]
    assert dist.amount_summary(fraud=True)["p50"] > 5 * dist.amount_summary(fraud=False)["p50"]


def test_category_shares_are_close_to_published(dist: Distribution) -> None:
    total = sum(PUBLISHED_CATEGORY_COUNTS.values())
    for category, count in PUBLISHED_CATEGORY_COUNTS.items():
        generated = dist.categories[category] / dist.rows
        assert generated == pytest.approx(count / total, abs=0.015), category


def test_hours_follow_the_published_shape(dist: Distribution) -> None:
    bands = dist.hour_band_share({"morning": range(12), "afternoon": range(12, 24)}, fraud=False)
    assert bands["afternoon"] == pytest.approx(0.61, abs=0.03)
    night = dist.hour_band_share({"night": [22, 23, 0, 1, 2, 3]}, fraud=True)["night"]
    assert night >= 0.7


def test_fraud_signature_categories_lead(dist: Distribution) -> None:
    top = [c for c, _ in dist.fraud_categories.most_common(3)]
    assert set(top) <= {"grocery_pos", "shopping_net", "misc_net", "shopping_pos"}


def test_population_size_resembles_published(dist: Distribution) -> None:
    assert 350 <= len(dist.cards) <= 550
    assert len(dist.merchants) == 700
