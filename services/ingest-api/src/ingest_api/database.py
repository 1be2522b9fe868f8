"""The api role's connection pool, opened on first use.

Ingestion must keep working while the database is down, so no pool is opened at start-up;
reads (transactions, alerts) open theirs when first asked and answer 503 while they cannot.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import asyncpg
from botocore.exceptions import BotoCoreError, ClientError

from cardstream_shared.db_credentials import dsn_from_secret
from ingest_api.settings import IngestSettings

# What a database read can fail with: the network, the server, a malformed secret
# (ValueError) or the Secrets Manager call that fetches it.
DATABASE_ERRORS: Final = (
    OSError,
    TimeoutError,
    ValueError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    ClientError,
    BotoCoreError,
)


class DatabaseUnavailableError(Exception):
    """The database cannot be reached or is not configured (answer 503)."""


class LazyPool:
    """An asyncpg pool on the api role, created once, on first use."""

    def __init__(
        self,
        settings: IngestSettings,
        secrets_client: Any,
        *,
        application_name: str,
        read_only: bool,
        min_size: int,
    ) -> None:
        self._settings = settings
        self._secrets = secrets_client
        self._application_name = application_name
        self._read_only = read_only
        self._min_size = min_size
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _dsn(self) -> str:
        if self._settings.database_url is not None:
            return self._settings.database_url.get_secret_value()
        if not self._settings.database_secret_id:
            raise DatabaseUnavailableError("no database is configured")
        response = await self._secrets.get_secret_value(SecretId=self._settings.database_secret_id)
        return dsn_from_secret(response["SecretString"], sslmode=self._settings.database_sslmode)

    async def get(self) -> asyncpg.Pool:
        """The pool; raises :class:`DatabaseUnavailableError` when none is configured."""
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                timeout_s = self._settings.db_statement_timeout_s
                server_settings = {
                    "application_name": self._application_name,
                    "statement_timeout": str(int(timeout_s * 1000)),
                }
                if self._read_only:
                    server_settings["default_transaction_read_only"] = "on"
                self._pool = await asyncpg.create_pool(
                    await self._dsn(),
                    min_size=self._min_size,
                    max_size=self._settings.pool_max_size,
                    timeout=timeout_s,
                    command_timeout=timeout_s,
                    server_settings=server_settings,
                )
            return self._pool

    async def close(self) -> None:
        """Close the pool if it was ever opened."""
        if self._pool is not None:
            await self._pool.close()
