"""Monitoring rules on crafted card histories, through the loader's real load path.

Each test loads rows with ``load_batch`` and the rule monitor as its after-insert hook,
as the loader role, into a database migrated with the real migrations, and asserts on the
alert rows that landed: the rule trips on the pattern and stays quiet just short of it.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry
from stream_lines import stream_line

from cardstream_monitoring.monitor import AlertMonitor
from cardstream_monitoring.rules import load_rules
from cardstream_shared import resource_names as names
from cardstream_shared.contract import kaggle_example
from cardstream_shared.pan import PanKeyring, luhn_valid
from db_loader.ledger import SourceObject
from db_loader.loader import LoadResult, PartitionCache, load_batch
from db_loader.rows import prepare

pytestmark = pytest.mark.integration

KEYRING = PanKeyring({"test-1": secrets.token_bytes(32)}, "test-1")
# Home: Moravian Falls, NC (the example row's cardholder).
HOME = (36.0788, -81.1781)
NEAR = (36.2, -81.3)
DENVER = (39.7392, -104.9903)  # about 2,100 km from home
DAY = dt.datetime(2019, 3, 4, 12, 0, 0)


def _pan(card: int) -> str:
    body = f"4{card:014d}"
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def row(
    card: int,
    when: dt.datetime,
    amt: str,
    *,
    category: str = "grocery_pos",
    merchant: str = "fraud_Corner Shop",
    where: tuple[float, float] = NEAR,
) -> dict[str, Any]:
    data = kaggle_example()
    data.update(
        trans_num=uuid.uuid4().hex,
        cc_num=_pan(card),
        trans_date_trans_time=when.strftime("%Y-%m-%d %H:%M:%S"),
        unix_time=int(when.replace(tzinfo=dt.UTC).timestamp()),
        amt=amt,
        category=category,
        merchant=merchant,
        lat=HOME[0],
        long=HOME[1],
        merch_lat=where[0],
        merch_long=where[1],
        is_fraud=0,
    )
    return data


@pytest.fixture
async def pool(module_database: str) -> AsyncIterator[asyncpg.Pool]:
    # Logged in as superuser, running as the loader role: the load has the service's grants.
    created = await asyncpg.create_pool(
        module_database, min_size=1, max_size=2, server_settings={"role": names.DB_LOADER_ROLE}
    )
    assert created is not None
    yield created
    await created.close()


class Loader:
    def __init__(self, pool: asyncpg.Pool, rules_override: str | None = None) -> None:
        self.pool = pool
        self.registry = CollectorRegistry()
        self.monitor = AlertMonitor(
            load_rules(override_text=rules_override), registry=self.registry
        )
        self.partitions = PartitionCache()

    async def load(self, rows: list[dict[str, Any]], key: str | None = None) -> LoadResult:
        lines = []
        for number, data in enumerate(rows, start=1):
            lines.append((number, stream_line(data, KEYRING, client_id="m-1")))
        source = SourceObject(bucket="file", key=key or uuid.uuid4().hex, etag="e")
        result = await load_batch(
            self.pool,
            source,
            prepare(lines),
            partitions=self.partitions,
            hooks=[self.monitor.after_insert],
        )
        self.monitor.after_commit(result)
        return result

    async def alerts(self, rows: list[dict[str, Any]]) -> dict[str, set[str]]:
        """rule -> alerted trans_nums among ``rows``."""
        found = await self.pool.fetch(
            "SELECT rule, trans_num FROM cardstream.alert WHERE trans_num = ANY($1::text[])",
            [r["trans_num"] for r in rows],
        )
        out: dict[str, set[str]] = {}
        for record in found:
            out.setdefault(record["rule"], set()).add(record["trans_num"])
        return out


def ids(rows: list[dict[str, Any]]) -> set[str]:
    return {r["trans_num"] for r in rows}


def history(card: int, days: int = 6, amt: str = "50.00") -> list[dict[str, Any]]:
    return [row(card, DAY - dt.timedelta(days=d + 1), amt) for d in range(days)]


async def test_amount_spike_trips_far_above_the_card_median(pool: asyncpg.Pool) -> None:
    loader = Loader(pool)
    past = history(101)
    await loader.load(past)
    spike = row(101, DAY, "900.00", category="travel")
    await loader.load([spike])
    assert await loader.alerts([spike]) == {"amount_spike": {spike["trans_num"]}}
    evidence = await pool.fetchval(
        "SELECT evidence FROM cardstream.alert WHERE trans_num = $1", spike["trans_num"]
    )
    assert '"card_median": 50.00' in evidence or '"card_median": 50.0' in evidence


@pytest.mark.parametrize(
    ("past_amount", "amount"),
    [("200.00", "900.00"), ("50.00", "700.00")],
    ids=["within-ten-times-the-median", "below-the-minimum-amount"],
)
async def test_amount_spike_stays_quiet(pool: asyncpg.Pool, past_amount: str, amount: str) -> None:
    card = 102 if past_amount == "200.00" else 103
    loader = Loader(pool)
    await loader.load(history(card, amt=past_amount))
    purchase = row(card, DAY, amount, category="travel")
    await loader.load([purchase])
    assert await loader.alerts([purchase]) == {}


async def test_amount_spike_needs_history(pool: asyncpg.Pool) -> None:
    loader = Loader(pool)
    await loader.load(history(104, days=2))
    purchase = row(104, DAY, "2000.00", category="travel")
    await loader.load([purchase])
    assert await loader.alerts([purchase]) == {}


def burst(
    card: int, n: int, minutes: int, amt: str, category: str = "shopping_pos"
) -> list[dict[str, Any]]:
    step = dt.timedelta(minutes=minutes) / n
    return [
        row(card, DAY + i * step, amt, category=category, merchant=f"fraud_Shop {card}-{i}")
        for i in range(n)
    ]


async def test_velocity_alerts_every_purchase_of_the_burst(pool: asyncpg.Pool) -> None:
    loader = Loader(pool)
    spree = burst(201, 7, 40, "60.00")
    # Two loads, as objects arrive: the first purchases are alerted once the burst completes.
    await loader.load(spree[:3])
    await loader.load(spree[3:])
    assert await loader.alerts(spree) == {"velocity": ids(spree)}


async def test_velocity_stays_quiet_below_the_count(pool: asyncpg.Pool) -> None:
    loader = Loader(pool)
    spree = burst(202, 5, 40, "60.00")
    await loader.load(spree)
    assert await loader.alerts(spree) == {}


async def test_velocity_stays_quiet_when_spread_out(pool: asyncpg.Pool) -> None:
    loader = Loader(pool)
    spread = burst(203, 7, 7 * 60, "60.00")
    await loader.load(spread)
    assert await loader.alerts(spread) == {}


async def test_card_testing_alerts_small_amounts_across_merchants(pool: asyncpg.Pool) -> None:
    loader = Loader(pool)
    probes = burst(301, 4, 12, "1.99", category="misc_net")
    await loader.load(probes)
    assert await loader.alerts(probes) == {"card_testing": ids(probes)}


async def test_card_testing_stays_quiet_for_larger_amounts(pool: asyncpg.Pool) -> None:
    loader = Loader(pool)
    purchases = burst(302, 4, 12, "12.50", category="misc_net")
    await loader.load(purchases)
    assert await loader.alerts(purchases) == {}


async def test_night_high_value_in_a_risky_category(pool: asyncpg.Pool) -> None:
    loader = Loader(pool)
    night = row(401, DAY.replace(hour=23, minute=10), "700.00", category="shopping_net")
    noon = row(401, DAY.replace(hour=13), "700.00", category="shopping_net")
    small = row(401, DAY.replace(hour=23, minute=40), "80.00", category="shopping_net")
    other = row(401, DAY.replace(hour=23, minute=50), "700.00", category="travel")
    await loader.load([night, noon, small, other])
    assert await loader.alerts([night, noon, small, other]) == {
        "night_high_value": {night["trans_num"]}
    }


async def test_far_from_home_beyond_the_card_habit(pool: asyncpg.Pool) -> None:
    loader = Loader(pool)
    await loader.load(history(501))
    far = row(501, DAY, "60.00", where=DENVER)
    await loader.load([far])
    assert await loader.alerts([far]) == {"far_from_home": {far["trans_num"]}}


async def test_far_from_home_stays_quiet_near_home(pool: asyncpg.Pool) -> None:
    loader = Loader(pool)
    await loader.load(history(502))
    # About 150 km away: still the card's region.
    nearby = row(502, DAY, "60.00", where=(37.1, -80.3))
    await loader.load([nearby])
    assert await loader.alerts([nearby]) == {}


async def test_impossible_travel_between_consecutive_purchases(pool: asyncpg.Pool) -> None:
    loader = Loader(pool)
    at_home = row(601, DAY, "40.00")
    away = row(601, DAY + dt.timedelta(minutes=30), "60.00", where=DENVER)
    # Back home the next day: a plausible return, so no travel alert for it.
    back = row(601, DAY + dt.timedelta(hours=5), "30.00")
    await loader.load([at_home, away, back])
    found = await loader.alerts([at_home, away, back])
    assert found["impossible_travel"] == {away["trans_num"]}
    assert back["trans_num"] not in set().union(*found.values())


async def test_impossible_travel_stays_quiet_at_plane_speed(pool: asyncpg.Pool) -> None:
    loader = Loader(pool, rules_override="[rules.far_from_home]\nenabled = false\n")
    at_home = row(602, DAY, "40.00")
    # 2,100 km in five hours: a flight, not a cloned card.
    away = row(602, DAY + dt.timedelta(hours=5), "60.00", where=DENVER)
    await loader.load([at_home, away])
    assert await loader.alerts([at_home, away]) == {}


async def test_structuring_alerts_every_amount_under_the_threshold(pool: asyncpg.Pool) -> None:
    loader = Loader(pool)
    deposits = [
        row(701, DAY + dt.timedelta(hours=h), amt, category="travel")
        for h, amt in ((0, "9400.00"), (7, "9850.00"), (20, "9100.00"))
    ]
    await loader.load(deposits[:1])
    await loader.load(deposits[1:])
    found = await loader.alerts(deposits)
    assert found["structuring"] == ids(deposits)


async def test_structuring_stays_quiet_outside_the_band_or_window(pool: asyncpg.Pool) -> None:
    loader = Loader(pool)
    over = [row(702, DAY + dt.timedelta(hours=h), "10400.00", category="travel") for h in (0, 2, 4)]
    slow = [
        row(703, DAY + dt.timedelta(days=4 * d), "9400.00", category="travel") for d in range(3)
    ]
    await loader.load(over + slow)
    found = await loader.alerts(over + slow)
    assert "structuring" not in found


async def test_a_disabled_rule_raises_nothing(pool: asyncpg.Pool) -> None:
    loader = Loader(pool, rules_override="[rules.velocity]\nenabled = false\n")
    spree = burst(801, 7, 40, "60.00")
    await loader.load(spree)
    assert await loader.alerts(spree) == {}


async def test_reload_raises_each_alert_once(pool: asyncpg.Pool) -> None:
    loader = Loader(pool)
    probes = burst(901, 5, 10, "2.50", category="misc_net")
    first = await loader.load(probes, key="probes")
    count = await pool.fetchval(
        "SELECT count(*) FROM cardstream.alert WHERE trans_num = ANY($1::text[])",
        [p["trans_num"] for p in probes],
    )
    assert first.inserted_count == 5
    assert count == 5
    # The same object again (a redelivered notification) and the same rows in another
    # object (a retried put that landed twice): no new rows, no new alerts.
    again = await loader.load(probes, key="probes")
    elsewhere = await loader.load(probes, key="probes-copy")
    assert again.already_loaded
    assert elsewhere.inserted_count == 0
    # Evaluating the same rows again (a replayed hook) conflicts on (trans_num, rule).
    async with pool.acquire() as conn:
        raised = await loader.monitor.engine.evaluate(conn, [p["trans_num"] for p in probes])
    assert raised == []
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM cardstream.alert WHERE trans_num = ANY($1::text[])",
            [p["trans_num"] for p in probes],
        )
        == count
    )


async def test_monitor_counts_alerts_and_observes_their_latency(pool: asyncpg.Pool) -> None:
    loader = Loader(pool)
    probes = burst(1001, 4, 8, "3.10", category="misc_net")
    result = await loader.load(probes)
    registry = loader.registry
    assert result.committed_at is not None
    assert (
        registry.get_sample_value(
            "cardstream_loader_alerts_total", {"rule": "card_testing", "severity": "high"}
        )
        == 4
    )
    assert registry.get_sample_value("cardstream_loader_commit_to_alert_seconds_count") == 4
    assert registry.get_sample_value("cardstream_loader_ingest_to_alert_seconds_count") == 4
    assert registry.get_sample_value("cardstream_loader_rules_seconds_count") == 1
