"""Labelled fraud and money-laundering patterns injected by the generator.

Each injector returns the transactions of one instance of its pattern on one card, all
labelled ``is_fraud = 1`` with the pattern's name, except an anchor purchase that a pattern
needs as the card's genuine previous transaction (impossible travel), which stays
unlabelled. The shapes follow the typologies the monitoring rules look for, with margins
wide enough that a rule can separate them from the legitimate traffic the generator makes:

- ``amount_spike``: one or two purchases at 12-30 times the card's own average amount.
- ``velocity``: 8-14 purchases at different merchants within 15-45 minutes (half at night).
- ``card_testing``: 5-10 purchases of 1.00-4.99 at different merchants within 5-20 minutes,
  at night.
- ``night_high_value``: 2-6 high-value purchases between 22:00 and 03:59 in grocery_pos,
  shopping_net, misc_net or shopping_pos, the signature of the published fraud rows.
- ``far_from_home``: 1-3 purchases at merchants at least 1,000 km from the cardholder's
  home, where the card's own purchases stay within about 150 km (Sparkov draws merchants
  within one degree of the home).
- ``impossible_travel``: a genuine purchase near home followed 5-40 minutes later by one or
  two purchases, each at least 1,500 km from home and from the one before (faster than any
  airliner).
- ``structuring``: 3-5 amounts between 9,000.00 and 9,950.00, just under the 10,000
  currency-transaction reporting threshold, within 6-48 hours.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from cardstream.generator_data import PLACES, Place

if TYPE_CHECKING:
    from cardstream.generator import Card, Customer, Txn, World

PATTERNS: Final = (
    "amount_spike",
    "velocity",
    "card_testing",
    "night_high_value",
    "far_from_home",
    "impossible_travel",
    "structuring",
)
# Share of pattern instances, chosen so that about 55 % of fraud rows are night_high_value
# and about 75 % fall between 22:00 and 03:59 (published: about 85 %).
PATTERN_WEIGHTS: Final = (0.10, 0.05, 0.08, 0.58, 0.07, 0.07, 0.05)
# Patterns that compare with the card's own history need some history first.
NEEDS_HISTORY: Final = frozenset({"amount_spike", "far_from_home"})
MIN_HISTORY: Final = 5

REPORTING_THRESHOLD_CENTS: Final = 1_000_000
FAR_KM: Final = 1_000.0
IMPOSSIBLE_KM: Final = 1_500.0
# Places are drawn this far apart so that jitter and home-area merchants keep every jump
# above IMPOSSIBLE_KM.
_JUMP_KM: Final = IMPOSSIBLE_KM + 300.0
DAY_S: Final = 86_400

# Published fraud rows cluster at 22:00-23:59 and, less, at 00:00-03:59.
_NIGHT_HOURS: Final = (22, 23, 0, 1, 2, 3)
_NIGHT_WEIGHTS: Final = (0.3, 0.3, 0.1, 0.1, 0.1, 0.1)
_NIGHT_CATEGORIES: Final = ("grocery_pos", "shopping_net", "misc_net", "shopping_pos")
_NIGHT_CATEGORY_WEIGHTS: Final = (0.35, 0.33, 0.18, 0.14)
# Night fraud amounts in cents per category (uniform ranges well above the legitimate ones).
_NIGHT_AMOUNTS: Final = {
    "grocery_pos": (27_500, 36_000),
    "shopping_net": (60_000, 110_000),
    "misc_net": (50_000, 100_000),
    "shopping_pos": (55_000, 105_000),
}
_TESTING_CATEGORIES: Final = ("misc_net", "shopping_net", "gas_transport", "grocery_net")
_SPIKE_CATEGORIES: Final = ("shopping_pos", "travel", "home", "misc_pos", "entertainment")
_STRUCTURING_CATEGORIES: Final = ("travel", "shopping_pos", "home", "misc_pos")
_DAYTIME: Final = (9 * 3600, 20 * 3600)


def haversine_km(lat1: float, long1: float, lat2: float, long2: float) -> float:
    """Great-circle distance in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(long2 - long1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(min(1.0, a)))


@dataclass(frozen=True, slots=True)
class Instance:
    """Where a pattern instance starts: the card, its owner and the day (epoch seconds)."""

    customer: Customer
    card: Card
    day_start: int


def _far_place(rng: random.Random, lat: float, long: float, min_km: float) -> Place:
    return rng.choice([p for p in PLACES if haversine_km(lat, long, p.lat, p.long) >= min_km])


def _night_start(rng: random.Random, day_start: int) -> int:
    # A night spans the evening of this day and the small hours of the next.
    hour = rng.choices(_NIGHT_HOURS, weights=_NIGHT_WEIGHTS)[0]
    return day_start + (DAY_S if hour < 12 else 0) + hour * 3600 + rng.randint(0, 2400)


def _near(rng: random.Random, lat: float, long: float, radius: float) -> tuple[float, float]:
    return lat + rng.uniform(-radius, radius), long + rng.uniform(-radius, radius)


def _distinct_merchants(
    world: World, rng: random.Random, categories: Sequence[str], n: int
) -> list[tuple[str, str]]:
    chosen: list[tuple[str, str]] = []
    seen: set[str] = set()
    while len(chosen) < n:
        category = rng.choice(categories)
        merchant = rng.choice(world.merchants[category])
        if merchant not in seen:
            seen.add(merchant)
            chosen.append((category, merchant))
    return chosen


def _txn(
    world: World,
    inst: Instance,
    ts: int,
    category: str,
    cents: int,
    pattern: str | None,
    *,
    merchant: str | None = None,
    where: tuple[float, float] | None = None,
) -> Txn:
    rng = world.rng
    lat, long = where or _near(rng, inst.customer.lat, inst.customer.long, 1.0)
    return world.make_txn(
        ts=ts,
        card=inst.card,
        category=category,
        cents=max(100, cents),
        merchant=merchant or rng.choice(world.merchants[category]),
        merch_lat=lat,
        merch_long=long,
        pattern=pattern,
    )


def amount_spike(world: World, inst: Instance) -> list[Txn]:
    rng = world.rng
    average = inst.customer.average_cents()
    out = []
    ts = inst.day_start + rng.randint(*_DAYTIME)
    for _ in range(rng.randint(1, 2)):
        cents = min(499_999, max(80_000, int(average * rng.uniform(12, 30))))
        out.append(_txn(world, inst, ts, rng.choice(_SPIKE_CATEGORIES), cents, "amount_spike"))
        ts += rng.randint(600, 4 * 3600)
    return out


def velocity(world: World, inst: Instance) -> list[Txn]:
    rng = world.rng
    n = rng.randint(8, 14)
    start = (
        _night_start(rng, inst.day_start)
        if rng.random() < 0.5
        else (inst.day_start + rng.randint(*_DAYTIME))
    )
    window = rng.randint(15 * 60, 45 * 60)
    offsets = sorted(rng.randint(0, window) for _ in range(n))
    picks = _distinct_merchants(world, rng, inst.customer.top_categories, n)
    return [
        _txn(
            world,
            inst,
            start + offset,
            category,
            world.legit_cents(category) + rng.randint(1_000, 6_000),
            "velocity",
            merchant=merchant,
        )
        for offset, (category, merchant) in zip(offsets, picks, strict=True)
    ]


def card_testing(world: World, inst: Instance) -> list[Txn]:
    rng = world.rng
    n = rng.randint(5, 10)
    # Testers work at night, when cardholders are asleep and do not see the alerts.
    start = _night_start(rng, inst.day_start)
    window = rng.randint(5 * 60, 20 * 60)
    offsets = sorted(rng.randint(0, window) for _ in range(n))
    picks = _distinct_merchants(world, rng, _TESTING_CATEGORIES, n)
    return [
        _txn(
            world,
            inst,
            start + offset,
            category,
            rng.randint(100, 499),
            "card_testing",
            merchant=merchant,
        )
        for offset, (category, merchant) in zip(offsets, picks, strict=True)
    ]


def night_high_value(world: World, inst: Instance) -> list[Txn]:
    rng = world.rng
    out = []
    # A night spans the evening of this day and the small hours of the next.
    for _ in range(rng.randint(2, 6)):
        hour = rng.choices(_NIGHT_HOURS, weights=_NIGHT_WEIGHTS)[0]
        day = inst.day_start + (DAY_S if hour < 12 else 0)
        ts = day + hour * 3600 + rng.randint(0, 3599)
        category = rng.choices(_NIGHT_CATEGORIES, weights=_NIGHT_CATEGORY_WEIGHTS)[0]
        cents = rng.randint(*_NIGHT_AMOUNTS[category])
        out.append(_txn(world, inst, ts, category, cents, "night_high_value"))
    return out


def far_from_home(world: World, inst: Instance) -> list[Txn]:
    rng = world.rng
    place = _far_place(rng, inst.customer.lat, inst.customer.long, FAR_KM)
    ts = inst.day_start + rng.randint(*_DAYTIME)
    out = []
    for _ in range(rng.randint(1, 3)):
        category = rng.choice(inst.customer.top_categories)
        where = _near(rng, place.lat, place.long, 0.3)
        cents = world.legit_cents(category) + rng.randint(2_000, 20_000)
        out.append(_txn(world, inst, ts, category, cents, "far_from_home", where=where))
        ts += rng.randint(1800, 3 * 3600)
    return out


def impossible_travel(world: World, inst: Instance) -> list[Txn]:
    rng = world.rng
    ts = inst.day_start + rng.randint(*_DAYTIME)
    category = rng.choice(inst.customer.top_categories)
    # The anchor is the cardholder's own purchase near home: genuine, so unlabelled.
    out = [_txn(world, inst, ts, category, world.legit_cents(category), None)]
    # Each labelled purchase is far from home and from every earlier one, so it is an
    # impossible jump from whatever the card did just before, even a genuine purchase at
    # home (merchants within ~150 km of it) in between.
    visited = [(inst.customer.lat, inst.customer.long)]
    for _ in range(rng.randint(1, 2)):
        options = [
            p
            for p in PLACES
            if all(haversine_km(lat, long, p.lat, p.long) >= _JUMP_KM for lat, long in visited)
        ]
        if not options:
            break
        place = rng.choice(options)
        ts += rng.randint(5 * 60, 40 * 60)
        category = rng.choice(_SPIKE_CATEGORIES)
        where = _near(rng, place.lat, place.long, 0.3)
        visited.append(where)
        cents = world.legit_cents(category) + rng.randint(5_000, 40_000)
        out.append(_txn(world, inst, ts, category, cents, "impossible_travel", where=where))
    return out


def structuring(world: World, inst: Instance) -> list[Txn]:
    rng = world.rng
    n = rng.randint(3, 5)
    start = inst.day_start + rng.randint(*_DAYTIME)
    window = rng.randint(6 * 3600, 48 * 3600)
    offsets = sorted(rng.randint(0, window) for _ in range(n))
    return [
        _txn(
            world,
            inst,
            start + offset,
            rng.choice(_STRUCTURING_CATEGORIES),
            rng.randint(
                REPORTING_THRESHOLD_CENTS * 90 // 100, REPORTING_THRESHOLD_CENTS * 995 // 1000
            ),
            "structuring",
        )
        for offset in offsets
    ]


INJECTORS: Final[dict[str, Callable[[World, Instance], list[Txn]]]] = {
    "amount_spike": amount_spike,
    "velocity": velocity,
    "card_testing": card_testing,
    "night_high_value": night_high_value,
    "far_from_home": far_from_home,
    "impossible_travel": impossible_travel,
    "structuring": structuring,
}
