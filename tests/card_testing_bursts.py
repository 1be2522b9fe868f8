"""Card-testing bursts loaded the real way, with the rules as the loader's hook (used by
the alert API and tenant isolation tests).

A burst is four small amounts on one card at four merchants within eight minutes: the
default rules raise a ``card_testing`` alert on each of its transactions, and nothing
else.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from typing import Any, Final

import asyncpg
from prometheus_client import CollectorRegistry
from stream_lines import stream_line

from cardstream_monitoring.monitor import AlertMonitor
from cardstream_monitoring.rules import load_rules
from cardstream_shared import resource_names as names
from cardstream_shared.contract import kaggle_example
from cardstream_shared.pan import PanKeyring, luhn_valid
from db_loader.ledger import SourceObject
from db_loader.loader import PartitionCache, load_batch
from db_loader.rows import prepare

KEYRING: Final = PanKeyring({"test-1": secrets.token_bytes(32)}, "test-1")
DAY: Final = dt.datetime(2019, 5, 6, 10, 0, 0)


def pan(card: int) -> str:
    """A Luhn-valid card number, one per ``card``."""
    body = f"5{card:014d}"
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def probe(card: int, i: int, amount: str = "1.50") -> dict[str, Any]:
    """The ``i``-th small purchase of a burst on ``card``, at a merchant of its own."""
    when = DAY + dt.timedelta(minutes=2 * i)
    data = kaggle_example()
    data.update(
        trans_num=uuid.uuid4().hex,
        cc_num=pan(card),
        trans_date_trans_time=when.strftime("%Y-%m-%d %H:%M:%S"),
        unix_time=int(when.replace(tzinfo=dt.UTC).timestamp()),
        amt=amount,
        merchant=f"fraud_Probe {i}",
    )
    return data


async def load(dsn: str, rows: list[tuple[dict[str, Any], str]]) -> list[str]:
    """``rows`` (record, posting client) as one landed object, loaded as the loader role
    with the rules; the trans_num of every alerted transaction (card testing only)."""
    lines = [
        (number, stream_line(data, KEYRING, client_id=client_id))
        for number, (data, client_id) in enumerate(rows, start=1)
    ]
    monitor = AlertMonitor(load_rules(), registry=CollectorRegistry())
    pool = await asyncpg.create_pool(dsn, server_settings={"role": names.DB_LOADER_ROLE})
    assert pool is not None
    try:
        result = await load_batch(
            pool,
            SourceObject(bucket="file", key=uuid.uuid4().hex, etag="e"),
            prepare(lines),
            partitions=PartitionCache(),
            hooks=[monitor.after_insert],
        )
    finally:
        await pool.close()
    raised = monitor.after_commit(result)
    assert {a.rule for a in raised} == {"card_testing"}
    return [a.trans_num for a in raised]


async def load_burst(dsn: str, card: int, client_id: str) -> list[str]:
    """A four-probe card-testing burst on ``card``, all posted by ``client_id``."""
    return await load(dsn, [(probe(card, i), client_id) for i in range(4)])
