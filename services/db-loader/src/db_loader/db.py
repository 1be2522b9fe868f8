"""The asyncpg pool: credentials from Secrets Manager (or a URL), TLS, timeouts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from cardstream_shared.aws import aio_client
from cardstream_shared.db_credentials import dsn_from_secret
from db_loader.settings import LoaderSettings

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # What code running inside a load sees: a pooled connection or a plain one.
    DbConnection: TypeAlias = (
        asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
    )


async def resolve_dsn(settings: LoaderSettings) -> str:
    """The loader role's URL: LOADER_DATABASE_URL, else the RDS-style secret."""
    if settings.database_url is not None:
        dsn = settings.database_url.get_secret_value()
        if settings.database_sslmode and "sslmode=" not in dsn:
            dsn += ("&" if "?" in dsn else "?") + f"sslmode={settings.database_sslmode}"
        return dsn
    async with aio_client("secretsmanager", settings) as client:
        response: dict[str, Any] = await client.get_secret_value(
            SecretId=settings.database_secret_id
        )
    return dsn_from_secret(str(response["SecretString"]), sslmode=settings.database_sslmode)


async def create_pool(
    dsn: str, *, min_size: int, max_size: int, statement_timeout_s: float
) -> asyncpg.Pool:
    """A pool whose sessions carry the loader's statement timeout and application name."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings={
            "application_name": "cardstream-db-loader",
            "statement_timeout": str(int(statement_timeout_s * 1000)),
        },
    )
    if pool is None:
        raise RuntimeError("asyncpg returned no pool")
    return pool
