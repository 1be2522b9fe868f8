"""``cardstream load``: Kaggle CSV and landed objects, replayed, against moto and PostgreSQL."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import secrets
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from stream_lines import stream_line

from cardstream.generator import write_csv
from cardstream_shared import resource_names as names
from cardstream_shared.pan import PanKeyring
from db_loader import backfill
from db_loader.migrate import bootstrap, with_credentials

pytestmark = pytest.mark.integration


@pytest.fixture
def loader_dsn(empty_database: str) -> str:
    password = secrets.token_urlsafe(16)
    bootstrap(empty_database, role_passwords={names.DB_LOADER_ROLE: password})
    return with_credentials(empty_database, names.DB_LOADER_ROLE, password)


@pytest.fixture
def aws(moto_reset: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("LOADER_ENVIRONMENT", "test")
    monkeypatch.setenv("LOADER_AWS_ENDPOINT_URL", moto_reset)
    kwargs: dict[str, Any] = {"endpoint_url": moto_reset, "region_name": "us-east-1"}
    secret = PanKeyring.new_secret_string("v1")
    boto3.client("secretsmanager", **kwargs).create_secret(
        Name=names.PAN_KEY_SECRET, SecretString=secret
    )
    s3 = boto3.client("s3", **kwargs)
    s3.create_bucket(Bucket=names.LANDING_BUCKET)
    return {"s3": s3, "keyring": PanKeyring.from_secret_string(secret)}


def run_load(target: str, dsn: str) -> int:
    parser = argparse.ArgumentParser()
    backfill.add_arguments(parser)
    return backfill.run(parser.parse_args([target, "--database-url", dsn]))


def fetch(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


def test_replaying_a_csv_twice_leaves_every_transaction_once_and_as_sent(
    tmp_path: Path, aws: dict[str, Any], loader_dsn: str, empty_database: str
) -> None:
    path = tmp_path / "sample.csv"
    write_csv(path, 500, seed=21)
    assert run_load(str(path), loader_dsn) == 0
    assert run_load(str(path), loader_dsn) == 0
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert fetch(empty_database, "SELECT count(*) FROM cardstream.transaction") == [(500,)]
    ledger = fetch(empty_database, "SELECT inserted_count FROM cardstream.object_ledger")
    assert ledger == [(500,)]
    stored = fetch(
        empty_database,
        "SELECT trans_num, cc_num, amt, zip, lat, merch_long, unix_time, is_fraud,"
        " trans_date_trans_time FROM cardstream.source_row",
    )
    expected = {
        (
            r["trans_num"],
            "****" + r["cc_num"][-4:],
            Decimal(r["amt"]),
            r["zip"],
            float(r["lat"]),
            float(r["merch_long"]),
            int(r["unix_time"]),
            int(r["is_fraud"]),
            dt.datetime.fromisoformat(r["trans_date_trans_time"]),
        )
        for r in rows
    }
    assert set(stored) == expected
    # The card numbers were tokenized with the PAN key from Secrets Manager, never stored.
    keyring = aws["keyring"]
    tokens = fetch(empty_database, "SELECT card_token FROM cardstream.card")
    assert {t for (t,) in tokens} == {keyring.tokenize(r["cc_num"]).token for r in rows}
    dump = fetch(
        empty_database,
        "SELECT string_agg(x::text, '') FROM (SELECT t::text AS x FROM cardstream.transaction t"
        " UNION ALL SELECT c::text FROM cardstream.card c"
        " UNION ALL SELECT l::text FROM cardstream.object_ledger l) s",
    )[0][0]
    assert not any(r["cc_num"] in dump for r in rows)


def test_landed_objects_under_a_prefix(
    aws: dict[str, Any], loader_dsn: str, empty_database: str, tmp_path: Path
) -> None:
    path = tmp_path / "rows.csv"
    write_csv(path, 120, seed=22)
    keyring = aws["keyring"]
    with path.open(newline="") as handle:
        # The published files' first column is an unnamed row index.
        rows = [{k: v for k, v in r.items() if k} for r in csv.DictReader(handle)]
    received = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
    lines = [stream_line(row, keyring, client_id="m", received_at=received) for row in rows]
    aws["s3"].put_object(
        Bucket=names.LANDING_BUCKET,
        Key="raw/dt=2026-11-27/hour=00/a.jsonl.gz",
        Body=gzip.compress(b"\n".join(lines[:80])),
    )
    aws["s3"].put_object(
        Bucket=names.LANDING_BUCKET,
        Key="raw/dt=2026-11-27/hour=01/b.jsonl.gz",
        Body=gzip.compress(b"\n".join(lines[40:])),
    )
    target = f"s3://{names.LANDING_BUCKET}/raw/dt=2026-11-27/"
    assert run_load(target, loader_dsn) == 0
    assert run_load(target, loader_dsn) == 0
    assert fetch(empty_database, "SELECT count(*) FROM cardstream.transaction") == [(120,)]
    assert fetch(empty_database, "SELECT count(*) FROM cardstream.object_ledger") == [(2,)]
