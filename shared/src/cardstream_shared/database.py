"""PostgreSQL for the services: the role's URL, its TLS mode and the connection pool.

Each service that reads or writes PostgreSQL (ingest-api, dashboard, db-loader) logs in as
its own role. Its URL is ``<PREFIX>DATABASE_URL`` when set (tests, compose), else built from
the role's RDS-style secret in Secrets Manager (AWS); ``<PREFIX>DATABASE_SSLMODE`` is set on
that URL either way, so the two sources cannot differ in how they reach the server, and with
``verify-ca`` or ``verify-full`` so is the CA bundle ``<PREFIX>DATABASE_SSLROOTCERT`` (the
Amazon RDS bundle by default; outside local and test the settings require verify-full).

asyncpg is an optional extra of this package, ``cardstream-shared[postgres]``, which the
three services declare: the stream-writer and the CDK app also import ``cardstream_shared``
but never talk to PostgreSQL, and their images need not carry a compiled database driver.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import asyncpg

from cardstream_shared.aws import aio_client
from cardstream_shared.settings import DatabaseSettings


class DatabaseNotConfiguredError(Exception):
    """Neither a database URL nor a database secret is set."""


def url_from_secret(secret_string: str) -> str:
    """PostgreSQL URL from an RDS-style secret: username, password, host, port, dbname.

    A malformed secret raises :class:`ValueError` naming what is wrong, never its content.
    """
    try:
        data: dict[str, Any] = json.loads(secret_string)
        user = quote(str(data["username"]), safe="")
        password = quote(str(data["password"]), safe="")
        host = str(data["host"])
        port = int(data.get("port", 5432))
        dbname = quote(str(data.get("dbname", "postgres")), safe="")
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"database secret is malformed: {type(exc).__name__}") from None
    return f"postgresql://{user}:{password}@{host}:{port}/{dbname}"


def with_sslmode(url: str, sslmode: str | None, sslrootcert: Path | None = None) -> str:
    """``url`` with its ``sslmode`` query parameter set to ``sslmode`` (unchanged if None)
    and, when the mode verifies the server, ``sslrootcert`` to the CA bundle."""
    if sslmode is None:
        return url
    values = {"sslmode": sslmode}
    if sslmode in ("verify-ca", "verify-full") and sslrootcert is not None:
        values["sslrootcert"] = str(sslrootcert)
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in values]
    query += values.items()
    return urlunsplit(parts._replace(query=urlencode(query)))


async def database_url(settings: DatabaseSettings, *, secrets: Any | None = None) -> str:
    """The service role's URL: ``database_url``, else the secret ``database_secret_id``
    (read with ``secrets``, an aiobotocore Secrets Manager client, or one opened for it),
    with ``database_sslmode`` set on it."""
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
    elif settings.database_secret_id:
        secret_id = settings.database_secret_id
        if secrets is None:
            async with aio_client("secretsmanager", settings) as client:
                response = await client.get_secret_value(SecretId=secret_id)
        else:
            response = await secrets.get_secret_value(SecretId=secret_id)
        url = url_from_secret(str(response["SecretString"]))
    else:
        raise DatabaseNotConfiguredError("no database is configured")
    return with_sslmode(url, settings.database_sslmode, settings.database_sslrootcert)


async def create_pool(
    url: str,
    *,
    application_name: str,
    min_size: int,
    max_size: int,
    statement_timeout_s: float,
    connect_timeout_s: float = 60.0,
    command_timeout_s: float | None = None,
    read_only: bool = False,
) -> asyncpg.Pool:
    """An asyncpg pool whose sessions carry ``application_name`` and the server-side
    ``statement_timeout``; with ``read_only`` they cannot write, whatever the role's grants.

    ``connect_timeout_s`` bounds opening a connection (asyncpg's ``timeout``);
    ``command_timeout_s`` bounds each query on the client side (None: unbounded).
    """
    server_settings = {
        "application_name": application_name,
        "statement_timeout": str(int(statement_timeout_s * 1000)),
    }
    if read_only:
        server_settings["default_transaction_read_only"] = "on"
    pool: asyncpg.Pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=connect_timeout_s,
        command_timeout=command_timeout_s,
        server_settings=server_settings,
    )
    return pool
