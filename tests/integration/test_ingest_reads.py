"""ingest-api reads against real PostgreSQL, and F2 carried through to the database.

Records are posted to the API (moto Kinesis), read back from the stream, loaded with the
db-loader's own ``load_batch`` as one landed object, then read through
``GET /v1/transactions/{trans_num}`` with the read-only api role.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import boto3
import httpx
import psycopg
import pytest
from botocore.exceptions import ReadTimeoutError
from ingest_aws import provision_ingest

from cardstream_shared import resource_names as names
from cardstream_shared.aws import aio_client
from cardstream_shared.contract import kaggle_example
from cardstream_shared.database import create_pool
from cardstream_shared.jwt_auth import SigningKey, generate_signing_key, issue_token
from db_loader.db import APPLICATION_NAME
from db_loader.ledger import SourceObject
from db_loader.loader import PartitionCache, load_batch
from db_loader.migrate import bootstrap, with_credentials
from db_loader.rows import prepare
from ingest_api.app import create_app
from ingest_api.settings import IngestSettings

pytestmark = pytest.mark.integration

STREAM = names.STREAM_NAME
LANDED_KEY = "raw/dt=2026-11-27/hour=06/shardId-000000000000-1-2.jsonl.gz"


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return generate_signing_key("reads-key")


@pytest.fixture
def aws(moto_reset: str) -> str:
    provision_ingest(moto_reset, "merchant-1", "merchant-2")
    return moto_reset


@pytest.fixture
def database(empty_database: str) -> dict[str, str]:
    """The model migrated into a database of its own; URLs of the api and loader roles."""
    passwords = {names.DB_API_ROLE: secrets.token_urlsafe(16)}
    passwords[names.DB_LOADER_ROLE] = secrets.token_urlsafe(16)
    bootstrap(empty_database, role_passwords=passwords)
    return {
        "admin": empty_database,
        "api": with_credentials(empty_database, names.DB_API_ROLE, passwords[names.DB_API_ROLE]),
        "loader": with_credentials(
            empty_database, names.DB_LOADER_ROLE, passwords[names.DB_LOADER_ROLE]
        ),
    }


class LostAckKinesis:
    """Stores the first call's records, then loses the answer (a read timeout)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.lost = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def put_records(self, **kwargs: Any) -> Any:
        answer = await self.real.put_records(**kwargs)
        if not self.lost:
            self.lost = True
            raise ReadTimeoutError(endpoint_url="http://kinesis")
        return answer


@asynccontextmanager
async def running_api(
    aws: str, tmp_path: Any, signing_key: SigningKey, api_dsn: str, *, lose_first_ack: bool
) -> AsyncIterator[httpx.AsyncClient]:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(signing_key.jwks))
    settings = IngestSettings(
        environment="test",
        aws_endpoint_url=aws,
        stream_name=STREAM,
        jwt_issuer="cardstream-local",
        jwt_audience="cardstream",
        jwks_url=f"file://{jwks}",
        database_url=api_dsn,
        coalesce_window_ms=1,
        put_backoff_base_s=0.01,
        operator_client_ids="operator-1",
    )
    async with aio_client("kinesis", settings) as real:
        client = LostAckKinesis(real) if lose_first_ack else None
        app = create_app(settings, kinesis_client=client)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
                yield http


def auth(
    signing_key: SigningKey,
    subject: str,
    scopes: tuple[str, ...] = (names.SCOPE_WRITE, names.SCOPE_READ),
) -> dict[str, str]:
    token = issue_token(
        signing_key,
        issuer="cardstream-local",
        audience="cardstream",
        subject=subject,
        scopes=scopes,
    )
    return {"Authorization": f"Bearer {token}"}


def stream_lines(endpoint: str) -> list[bytes]:
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    iterator = kinesis.get_shard_iterator(
        StreamName=STREAM, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return [r["Data"] for r in kinesis.get_records(ShardIterator=iterator)["Records"]]


async def land_and_load(loader_dsn: str, lines: list[bytes]) -> None:
    """What the stream-writer and db-loader do, as one object."""
    pool = await create_pool(
        loader_dsn,
        application_name=APPLICATION_NAME,
        min_size=1,
        max_size=2,
        statement_timeout_s=30,
    )
    try:
        await load_batch(
            pool,
            SourceObject(bucket=names.LANDING_BUCKET, key=LANDED_KEY, etag="e1"),
            prepare(list(enumerate(lines, start=1))),
            partitions=PartitionCache(),
        )
    finally:
        await pool.close()


async def test_get_returns_the_loaded_transaction_masked_with_lineage(
    aws: str, database: dict[str, str], tmp_path: Any, signing_key: SigningKey
) -> None:
    mine = kaggle_example()
    theirs = kaggle_example() | {"trans_num": "other-merchants-transaction"}
    me, other = auth(signing_key, "merchant-1"), auth(signing_key, "merchant-2")
    operator = auth(signing_key, "operator-1", (names.SCOPE_READ, names.SCOPE_ALL_TENANTS))
    async with running_api(
        aws, tmp_path, signing_key, database["api"], lose_first_ack=False
    ) as api:
        assert (await api.post("/v1/transactions", json=mine, headers=me)).status_code == 202
        assert (await api.post("/v1/transactions", json=theirs, headers=other)).status_code == 202
        before = await api.get(f"/v1/transactions/{mine['trans_num']}", headers=me)
        await land_and_load(database["loader"], stream_lines(aws))
        found = await api.get(f"/v1/transactions/{mine['trans_num']}", headers=me)
        foreign = await api.get(f"/v1/transactions/{theirs['trans_num']}", headers=me)
        absent = await api.get("/v1/transactions/never-sent", headers=me)
        as_owner = await api.get(f"/v1/transactions/{theirs['trans_num']}", headers=other)
        as_operator = await api.get(f"/v1/transactions/{theirs['trans_num']}", headers=operator)
    assert before.status_code == 404  # accepted, not loaded yet
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["trans_num"] == mine["trans_num"]
    assert body["card"] == {"masked": "****2095", "last4": "2095"}
    assert mine["cc_num"] not in found.text
    assert (body["amt"], body["zip"], body["unix_time"]) == ("4.97", "28654", 1325376018)
    assert body["trans_date_trans_time"] == mine["trans_date_trans_time"]
    assert body["lineage"]["client_id"] == "merchant-1"
    assert (body["lineage"]["s3_bucket"], body["lineage"]["s3_key"]) == (
        names.LANDING_BUCKET,
        LANDED_KEY,
    )
    # Another client's transaction is indistinguishable from a missing one (OWASP API1).
    assert foreign.status_code == absent.status_code == 404
    assert foreign.content == absent.content
    assert foreign.headers == absent.headers
    assert as_owner.status_code == 200
    # An operator (tenants:all) reads every client's transactions.
    assert as_operator.status_code == 200
    assert as_operator.json()["lineage"]["client_id"] == "merchant-2"


async def test_f2_a_lost_ack_duplicate_ends_as_one_row(
    aws: str, database: dict[str, str], tmp_path: Any, signing_key: SigningKey
) -> None:
    row = kaggle_example()
    me = auth(signing_key, "merchant-1")
    async with running_api(aws, tmp_path, signing_key, database["api"], lose_first_ack=True) as api:
        posted = await api.post("/v1/transactions", json=row, headers=me)
        lines = stream_lines(aws)
        await land_and_load(database["loader"], lines)
        found = await api.get(f"/v1/transactions/{row['trans_num']}", headers=me)
    assert posted.status_code == 202
    assert len(lines) == 2  # the record is in the stream twice
    assert found.status_code == 200
    with psycopg.connect(database["admin"]) as conn:
        result = conn.execute(
            "SELECT count(*) FROM cardstream.transaction WHERE trans_num = %s",
            (row["trans_num"],),
        ).fetchone()
    assert result == (1,)


async def test_reads_answer_503_while_the_database_is_down(
    aws: str, tmp_path: Any, signing_key: SigningKey
) -> None:
    unreachable = "postgresql://cardstream_api:x@127.0.0.1:1/cardstream"
    me = auth(signing_key, "merchant-1")
    async with running_api(aws, tmp_path, signing_key, unreachable, lose_first_ack=False) as api:
        read = await api.get("/v1/transactions/abc", headers=me)
        write = await api.post("/v1/transactions", json=kaggle_example(), headers=me)
    assert read.status_code == 503
    assert read.headers["retry-after"]
    # Ingestion does not depend on the database.
    assert write.status_code == 202
