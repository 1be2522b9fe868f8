"""Every row the generator writes passes ingest validation, whatever the seed and size."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardstream.generator import write_rows
from cardstream_shared.transaction_input import Transaction, read_csv

pytestmark = pytest.mark.unit


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**63),
    rows=st.integers(min_value=1, max_value=400),
    start=st.dates(min_value=dt.date(1977, 1, 1), max_value=dt.date(2030, 12, 31)),
    fraud_rate=st.sampled_from([0.0, 0.006, 0.05, 0.3]),
)
def test_generated_rows_pass_validation(
    seed: int, rows: int, start: dt.date, fraud_rate: float
) -> None:
    buffer = io.StringIO()
    summary = write_rows(buffer, rows, seed, start=start, fraud_rate=fraud_rate)
    buffer.seek(0)
    outcomes = list(read_csv(buffer))
    assert summary.rows == rows
    assert len(outcomes) == rows
    assert all(isinstance(o, Transaction) for o in outcomes), [
        o for o in outcomes if not isinstance(o, Transaction)
    ][:3]
