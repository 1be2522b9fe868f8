"""``cardstream generate``: deterministic synthetic transactions in the published Kaggle CSV.

The model follows the Sparkov simulator behind the published files: a population of
customers, each with a home, a profile of category preferences and a daily purchase rate;
merchants drawn per category and placed uniformly within one degree of the customer's home;
amounts per category with a heavy tail; more purchases in the afternoon and evening, at
weekends and in December. Fraud is injected as labelled patterns (see
:mod:`cardstream.generator_patterns`) at about 0.6 % of rows.

The output has the published files' quirks: an unnamed index column first, quoted fields
containing commas, card numbers and zips written as integers (leading zeros lost), merchant
names prefixed ``fraud_``, and ``unix_time`` seven calendar years before the printed time
(the simulator ran on 2012-2013 dates and the published timestamps were moved to 2019-2020
afterwards; ``2019-01-01 00:00:18`` carries ``1325376018``, 2012-01-01 00:00:18 UTC).

The same seed gives a byte-identical file: everything random comes from one
``random.Random(seed)`` and nothing depends on hash order or the clock.
"""

from __future__ import annotations

import argparse
import bisect
import calendar
import csv
import datetime as dt
import heapq
import itertools
import math
import random
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TextIO

from cardstream.generator_data import (
    CATEGORIES,
    FEMALE_FIRST,
    JOBS,
    LAST_NAMES,
    MALE_FIRST,
    PLACES,
    PUBLISHED_CATEGORY_COUNTS,
    STREET_NAMES,
    STREET_SUFFIXES,
)
from cardstream.generator_patterns import (
    INJECTORS,
    MIN_HISTORY,
    NEEDS_HISTORY,
    PATTERN_WEIGHTS,
    PATTERNS,
    Instance,
)
from cardstream_shared.contract import KAGGLE_FIELDS
from cardstream_shared.pan import luhn_valid

DEFAULT_START: Final = dt.date(2019, 1, 1)
DEFAULT_FRAUD_RATE: Final = 0.006
MAX_CUSTOMERS: Final = 1000
ROWS_PER_CUSTOMER: Final = 100
MERCHANT_COUNT: Final = 700
DAY_S: Final = 86_400
# The published unix_time is the simulator's time, seven calendar years before the text.
UNIX_TIME_YEARS_BEFORE: Final = 7
_EPOCH: Final = dt.date(1970, 1, 1)
CSV_HEADER: Final = ("", *KAGGLE_FIELDS)

# Legitimate amounts per category, in dollars: the share of small purchases (1-25, drawn
# log-uniformly) and the mean and standard deviation of the gamma-distributed rest, as the
# simulator draws them (Sparkov v0.3 "transaction amount generation via Gamma distribution").
_AMOUNT_MODEL: Final = {
    "gas_transport": (0.02, 58.0, 16.0),
    "grocery_pos": (0.02, 104.0, 40.0),
    "home": (0.32, 84.0, 53.0),
    "shopping_pos": (0.28, 97.0, 158.0),
    "kids_pets": (0.32, 79.0, 53.0),
    "shopping_net": (0.32, 106.0, 176.0),
    "entertainment": (0.28, 84.0, 79.0),
    "food_dining": (0.32, 70.0, 44.0),
    "personal_care": (0.36, 66.0, 48.0),
    "health_fitness": (0.32, 75.0, 44.0),
    "misc_pos": (0.28, 79.0, 97.0),
    "misc_net": (0.36, 97.0, 132.0),
    "grocery_net": (0.08, 51.0, 18.0),
    "travel": (0.36, 167.0, 572.0),
}
_SMALL_LOG_MAX: Final = math.log(25.0)
# A few legitimate purchases are very large (the published maximum is about 28,950).
_OUTLIER_RATE: Final = 0.0004
_OUTLIER_RANGE: Final = (1_500.0, 28_000.0)
# Hour-of-day weights: the published legitimate rows are about 3.3 % per hour before noon
# and 5.1 % per hour after.
_HOUR_WEIGHTS: Final = (1.0,) * 12 + (1.55,) * 12
# Monday..Sunday and January..December multipliers (Sparkov's date weights favour Friday
# to Sunday and the December holidays).
_WEEKDAY_WEIGHTS: Final = (0.8, 0.9, 1.0, 1.0, 1.5, 1.75, 1.75)
_MONTH_WEIGHTS: Final = (0.9, 0.9, 1.0, 1.0, 1.0, 1.05, 1.05, 1.05, 0.95, 0.95, 1.05, 1.45)
_RATE_RANGE: Final = (0.8, 4.2)  # purchases per customer per day; the published mean is ~2.5

# Card brands as Faker draws them for the simulator: (prefixes, length). "#" is any digit.
# Maestro's "0604" prefix is why some published numbers have 11 digits: written as an
# integer the 12-digit number lost its leading zero.
_CARD_BRANDS: Final = (
    (("5018", "5020", "5038", "56##", "57##", "58##", "6304", "6759", "6761", "0604"), 12),
    (("51", "52", "53", "54", "55", "2221", "2720"), 16),
    (("4",), 16),
    (("4",), 13),
    (("4",), 19),
    (("34", "37"), 15),
    (("6011", "65"), 16),
    (("300", "301", "302", "303", "304", "305", "36", "38"), 14),
    (("2131", "1800"), 15),
    (("3528", "3589", "35##"), 16),
)
_MERCHANT_SEED: Final = 20190101
_MERCHANT_SUFFIXES: Final = ("Inc", "LLC", "Ltd", "Group", "PLC", "and Sons")


@dataclass(slots=True)
class Card:
    """A card as the published files write it (an integer, so leading zeros are gone)."""

    number: str
    owner: Customer


@dataclass(slots=True)
class Customer:
    """A cardholder: identity, home, habits, and the running history patterns compare with."""

    first: str
    last: str
    gender: str
    street: str
    city: str
    state: str
    zip: str
    lat: float
    long: float
    city_pop: int
    job: str
    dob: dt.date
    rate: float
    category_cum: list[float]
    top_categories: tuple[str, ...]
    cards: list[Card] = field(default_factory=list)
    legit_count: int = 0
    legit_cents: int = 0

    def average_cents(self) -> float:
        """Average legitimate amount so far (a typical amount before any history)."""
        return self.legit_cents / self.legit_count if self.legit_count else 7_000.0


@dataclass(slots=True)
class Txn:
    """One transaction before formatting; ``ts`` is naive local time in epoch seconds."""

    ts: int
    card: Card
    category: str
    cents: int
    merchant: str
    merch_lat: float
    merch_long: float
    pattern: str | None


@dataclass(frozen=True, slots=True)
class GeneratedRow:
    """One CSV row: its index, the 22 Kaggle fields as written, and its injected pattern."""

    index: int
    values: tuple[str, ...]
    pattern: str | None

    @property
    def trans_num(self) -> str:
        return self.values[_TRANS_NUM]

    @property
    def cc_num(self) -> str:
        return self.values[_CC_NUM]

    def as_dict(self) -> dict[str, str]:
        """Field name -> value as written (what a CSV reader of the file yields)."""
        return dict(zip(KAGGLE_FIELDS, self.values, strict=True))


_TRANS_NUM: Final = KAGGLE_FIELDS.index("trans_num")
_CC_NUM: Final = KAGGLE_FIELDS.index("cc_num")


@dataclass
class GenerationSummary:
    """What a run wrote: row and fraud counts, patterns, and the population's size."""

    rows: int = 0
    fraud_rows: int = 0
    patterns: Counter[str] = field(default_factory=Counter)
    customers: int = 0
    cards: int = 0
    merchants: int = 0


def _cumulative(weights: tuple[float, ...] | list[float]) -> list[float]:
    return list(itertools.accumulate(weights))


def _pick(rng: random.Random, cum: list[float]) -> int:
    return bisect.bisect_right(cum, rng.random() * cum[-1])


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method: exact and cheap for the small daily rates used here.
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def card_number(rng: random.Random, prefixes: tuple[str, ...], length: int) -> str:
    """A Luhn-valid number of ``length`` digits on one of ``prefixes``, as an integer prints."""
    prefix = "".join(str(rng.randint(0, 9)) if c == "#" else c for c in rng.choice(prefixes))
    body = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        if luhn_valid(body + check):
            return str(int(body + check))
    raise AssertionError("one of ten check digits always passes the Luhn check")


def merchant_names() -> dict[str, list[str]]:
    """The fixed merchant universe: about 700 names per category, prefixed ``fraud_``."""
    rng = random.Random(_MERCHANT_SEED)
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < MERCHANT_COUNT:
        a, b, c = (rng.choice(LAST_NAMES) for _ in range(3))
        shape = rng.random()
        if shape < 0.4:
            name = f"{a} {rng.choice(_MERCHANT_SUFFIXES)}"
        elif shape < 0.7:
            name = f"{a}-{b}"
        else:
            name = f"{a}, {b} and {c}"
        if name not in seen:
            seen.add(name)
            names.append(f"fraud_{name}")
    total = sum(PUBLISHED_CATEGORY_COUNTS.values())
    result: dict[str, list[str]] = {}
    position = 0
    for i, category in enumerate(CATEGORIES):
        if i == len(CATEGORIES) - 1:
            share = MERCHANT_COUNT - position
        else:
            share = max(20, round(MERCHANT_COUNT * PUBLISHED_CATEGORY_COUNTS[category] / total))
        result[category] = names[position : position + share]
        position += share
    return result


class World:
    """The simulated population and the random source every draw comes from."""

    def __init__(self, rng: random.Random, customers: int, start: dt.date) -> None:
        self.rng = rng
        self.merchants = merchant_names()
        self._seq = itertools.count()
        self._hour_cum = _cumulative(_HOUR_WEIGHTS)
        self._card_numbers: set[str] = set()
        base = [float(PUBLISHED_CATEGORY_COUNTS[c]) for c in CATEGORIES]
        self.customers = [self._customer(base, start) for _ in range(customers)]
        self.cards = [card for customer in self.customers for card in customer.cards]

    def _customer(self, base: list[float], start: dt.date) -> Customer:
        rng = self.rng
        gender = "F" if rng.random() < 0.55 else "M"
        first = rng.choice(FEMALE_FIRST if gender == "F" else MALE_FIRST)
        place = rng.choice(PLACES)
        street = f"{rng.randint(1, 99999)} {rng.choice(STREET_NAMES)} {rng.choice(STREET_SUFFIXES)}"
        if rng.random() < 0.2:
            street += f" {rng.choice(('Apt.', 'Suite'))} {rng.randint(1, 999)}"
        age_days = rng.randint(18 * 365, 92 * 365)
        weights = [w * rng.uniform(0.4, 1.6) for w in base]
        top = sorted(range(len(CATEGORIES)), key=lambda i: -weights[i])[:5]
        customer = Customer(
            first=first,
            last=rng.choice(LAST_NAMES),
            gender=gender,
            street=street,
            city=place.city,
            state=place.state,
            # Written as an integer like the published files: 02108 becomes 2108.
            zip=str(int(place.zip)),
            lat=round(place.lat + rng.uniform(-0.05, 0.05), 4),
            long=round(place.long + rng.uniform(-0.05, 0.05), 4),
            city_pop=place.city_pop,
            job=rng.choice(JOBS),
            dob=start - dt.timedelta(days=age_days),
            rate=rng.uniform(*_RATE_RANGE),
            category_cum=_cumulative(weights),
            top_categories=tuple(CATEGORIES[i] for i in top),
        )
        for _ in range(2 if rng.random() < 0.1 else 1):
            customer.cards.append(Card(self._new_card_number(), customer))
        return customer

    def _new_card_number(self) -> str:
        while True:
            prefixes, length = self.rng.choice(_CARD_BRANDS)
            number = card_number(self.rng, prefixes, length)
            if number not in self._card_numbers:
                self._card_numbers.add(number)
                return number

    def legit_cents(self, category: str) -> int:
        """A legitimate amount for ``category`` in cents (at least 1.00)."""
        rng = self.rng
        if rng.random() < _OUTLIER_RATE:
            low, high = _OUTLIER_RANGE
            dollars = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            p_small, mean, sd = _AMOUNT_MODEL[category]
            if rng.random() < p_small:
                dollars = math.exp(rng.uniform(0.0, _SMALL_LOG_MAX))
            else:
                shape = (mean / sd) ** 2
                dollars = rng.gammavariate(shape, sd * sd / mean)
        return max(100, round(dollars * 100))

    def make_txn(
        self,
        *,
        ts: int,
        card: Card,
        category: str,
        cents: int,
        merchant: str,
        merch_lat: float,
        merch_long: float,
        pattern: str | None,
    ) -> Txn:
        """A transaction; merchant coordinates are kept in range."""
        return Txn(
            ts=ts,
            card=card,
            category=category,
            cents=cents,
            merchant=merchant,
            merch_lat=max(-90.0, min(90.0, merch_lat)),
            merch_long=max(-180.0, min(180.0, merch_long)),
            pattern=pattern,
        )

    def legit_day(self, day_start: int, weight: float) -> list[Txn]:
        """Every customer's ordinary purchases on one day."""
        rng = self.rng
        out = []
        for customer in self.customers:
            for _ in range(_poisson(rng, customer.rate * weight)):
                category = CATEGORIES[_pick(rng, customer.category_cum)]
                card = customer.cards[0]
                if len(customer.cards) > 1 and rng.random() < 0.3:
                    card = customer.cards[1]
                ts = day_start + _pick(rng, self._hour_cum) * 3600 + rng.randint(0, 3599)
                cents = self.legit_cents(category)
                out.append(
                    self.make_txn(
                        ts=ts,
                        card=card,
                        category=category,
                        cents=cents,
                        merchant=rng.choice(self.merchants[category]),
                        # Sparkov places the merchant uniformly within one degree of home.
                        merch_lat=customer.lat + rng.uniform(-1.0, 1.0),
                        merch_long=customer.long + rng.uniform(-1.0, 1.0),
                        pattern=None,
                    )
                )
        return out

    def pattern_instance(self, day_start: int) -> list[Txn]:
        """One labelled pattern instance on a randomly chosen card."""
        rng = self.rng
        name = rng.choices(PATTERNS, weights=PATTERN_WEIGHTS)[0]
        card = rng.choice(self.cards)
        if name in NEEDS_HISTORY:
            seasoned = [c for c in self.cards if c.owner.legit_count >= MIN_HISTORY]
            if not seasoned:
                name = "night_high_value"
            else:
                card = rng.choice(seasoned)
        return INJECTORS[name](self, Instance(card.owner, card, day_start))

    def next_seq(self) -> int:
        return next(self._seq)


def _day_weight(day: dt.date) -> float:
    mean_weekday = sum(_WEEKDAY_WEIGHTS) / len(_WEEKDAY_WEIGHTS)
    return _WEEKDAY_WEIGHTS[day.weekday()] / mean_weekday * _MONTH_WEIGHTS[day.month - 1]


def _unix_base(day: dt.date) -> int:
    # Feb 29 has no counterpart seven years earlier; the 28th stands in for it.
    try:
        earlier = day.replace(year=day.year - UNIX_TIME_YEARS_BEFORE)
    except ValueError:
        earlier = day.replace(year=day.year - UNIX_TIME_YEARS_BEFORE, day=28)
    return calendar.timegm(earlier.timetuple())


def _coordinate(value: float, places: int) -> str:
    # The published files print floats in their shortest form (36.0788, -82.048315).
    return repr(round(value, places))


def population_size(rows: int) -> int:
    """Customers for a file of ``rows`` rows: about a hundred purchases each, at most 1,000."""
    return max(10, min(MAX_CUSTOMERS, rows // ROWS_PER_CUSTOMER))


def iter_rows(
    rows: int,
    seed: int,
    *,
    start: dt.date = DEFAULT_START,
    fraud_rate: float = DEFAULT_FRAUD_RATE,
) -> Iterator[GeneratedRow]:
    """``rows`` transactions in time order from ``start`` (00:00), deterministic in ``seed``.

    Days are simulated one after another; a pattern may run past midnight, so transactions
    wait in a heap until no later day can produce an earlier one.
    """
    if rows < 0:
        raise ValueError("rows must be >= 0")
    if not 0 <= fraud_rate < 0.5:
        raise ValueError("fraud_rate must be in [0, 0.5)")
    if start.year - UNIX_TIME_YEARS_BEFORE < 1970:
        raise ValueError(f"start must be in {1970 + UNIX_TIME_YEARS_BEFORE} or later")
    rng = random.Random(seed)
    world = World(rng, population_size(rows), start)
    heap: list[tuple[int, int, Txn]] = []
    emitted = legit = fraud = 0
    day_index = (start - _EPOCH).days
    day_text: dict[int, tuple[str, int]] = {}
    while emitted < rows:
        day = _EPOCH + dt.timedelta(days=day_index)
        day_start = day_index * DAY_S
        txns = world.legit_day(day_start, _day_weight(day))
        legit += len(txns)
        while fraud * (1 - fraud_rate) < fraud_rate * legit:
            instance = world.pattern_instance(day_start)
            for txn in instance:
                if txn.pattern is None:
                    legit += 1
                else:
                    fraud += 1
            txns.extend(instance)
        for txn in txns:
            heapq.heappush(heap, (txn.ts, world.next_seq(), txn))
        day_index += 1
        horizon = day_index * DAY_S
        while heap and heap[0][0] < horizon and emitted < rows:
            _, _, txn = heapq.heappop(heap)
            yield _format(txn, emitted, rng, day_text)
            emitted += 1


def _format(
    txn: Txn, index: int, rng: random.Random, day_text: dict[int, tuple[str, int]]
) -> GeneratedRow:
    day_index, second = divmod(txn.ts, DAY_S)
    if day_index not in day_text:
        day = _EPOCH + dt.timedelta(days=day_index)
        day_text.clear()
        day_text[day_index] = (day.isoformat(), _unix_base(day))
    date_text, unix_base = day_text[day_index]
    hour, rest = divmod(second, 3600)
    minute, sec = divmod(rest, 60)
    customer = txn.card.owner
    if txn.pattern is None:
        customer.legit_count += 1
        customer.legit_cents += txn.cents
    values = (
        f"{date_text} {hour:02d}:{minute:02d}:{sec:02d}",
        txn.card.number,
        txn.merchant,
        txn.category,
        f"{txn.cents // 100}.{txn.cents % 100:02d}",
        customer.first,
        customer.last,
        customer.gender,
        customer.street,
        customer.city,
        customer.state,
        customer.zip,
        _coordinate(customer.lat, 4),
        _coordinate(customer.long, 4),
        str(customer.city_pop),
        customer.job,
        customer.dob.isoformat(),
        f"{rng.getrandbits(128):032x}",
        str(unix_base + second),
        _coordinate(txn.merch_lat, 6),
        _coordinate(txn.merch_long, 6),
        "0" if txn.pattern is None else "1",
    )
    return GeneratedRow(index=index, values=values, pattern=txn.pattern)


def write_rows(
    out: TextIO,
    rows: int,
    seed: int,
    *,
    labels: TextIO | None = None,
    start: dt.date = DEFAULT_START,
    fraud_rate: float = DEFAULT_FRAUD_RATE,
) -> GenerationSummary:
    """Write the CSV (and the ``trans_num,pattern`` labels) to open text streams."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    label_writer = csv.writer(labels, lineterminator="\n") if labels is not None else None
    if label_writer is not None:
        label_writer.writerow(("trans_num", "pattern"))
    summary = GenerationSummary()
    cards: set[str] = set()
    merchants: set[str] = set()
    for row in iter_rows(rows, seed, start=start, fraud_rate=fraud_rate):
        writer.writerow((row.index, *row.values))
        summary.rows += 1
        cards.add(row.cc_num)
        merchants.add(row.values[2])
        if row.pattern is not None:
            summary.fraud_rows += 1
            summary.patterns[row.pattern] += 1
            if label_writer is not None:
                label_writer.writerow((row.trans_num, row.pattern))
    summary.customers = population_size(rows)
    summary.cards = len(cards)
    summary.merchants = len(merchants)
    return summary


def write_csv(
    path: Path,
    rows: int,
    seed: int,
    *,
    start: dt.date = DEFAULT_START,
    fraud_rate: float = DEFAULT_FRAUD_RATE,
    labels_path: Path | None = None,
) -> GenerationSummary:
    """Write ``rows`` generated transactions to ``path`` (and labels to ``labels_path``)."""
    with path.open("w", newline="", encoding="utf-8") as out:
        if labels_path is None:
            return write_rows(out, rows, seed, start=start, fraud_rate=fraud_rate)
        with labels_path.open("w", newline="", encoding="utf-8") as labels:
            return write_rows(out, rows, seed, labels=labels, start=start, fraud_rate=fraud_rate)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cardstream generate``."""
    parser.add_argument("--rows", type=_non_negative, required=True, help="rows to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.add_argument(
        "--start",
        type=_date,
        default=DEFAULT_START,
        help=f"first day, YYYY-MM-DD (default {DEFAULT_START})",
    )
    parser.add_argument(
        "--fraud-rate",
        type=float,
        default=DEFAULT_FRAUD_RATE,
        help=f"share of labelled pattern rows (default {DEFAULT_FRAUD_RATE})",
    )
    parser.add_argument(
        "--labels-out", type=Path, help="also write trans_num,pattern for every injected row"
    )


def run(args: argparse.Namespace) -> int:
    """Write the file and print a one-line summary to stderr."""
    try:
        summary = write_csv(
            args.out,
            args.rows,
            args.seed,
            start=args.start,
            fraud_rate=args.fraud_rate,
            labels_path=args.labels_out,
        )
    except (ValueError, OSError) as exc:
        print(f"cardstream generate: {exc}", file=sys.stderr)
        return 2
    rate = summary.fraud_rows / summary.rows if summary.rows else 0.0
    print(
        f"wrote {summary.rows} rows to {args.out}: {summary.fraud_rows} labelled fraud "
        f"({rate:.2%}), {summary.cards} cards, {summary.merchants} merchants",
        file=sys.stderr,
    )
    return 0
