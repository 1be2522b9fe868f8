"""The api role's connection pool, opened on first use.

Ingestion must keep working while the database is down, so no pool is opened at start-up;
reads (transactions, alerts) open theirs when first asked and answer 503 while they cannot.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import asyncpg
from botocore.exceptions import BotoCoreError, ClientError

from cardstream_shared.database import DatabaseNotConfiguredError, create_pool, database_url
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

    async def get(self) -> asyncpg.Pool:
        """The pool; raises :class:`DatabaseUnavailableError` when none is configured."""
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                try:
                    url = await database_url(self._settings, secrets=self._secrets)
                except DatabaseNotConfiguredError as exc:
                    raise DatabaseUnavailableError(str(exc)) from None
                timeout_s = self._settings.db_statement_timeout_s
                self._pool = await create_pool(
                    url,
                    application_name=self._application_name,
                    min_size=self._min_size,
                    max_size=self._settings.pool_max_size,
                    statement_timeout_s=timeout_s,
                    connect_timeout_s=timeout_s,
                    command_timeout_s=timeout_s,
                    read_only=self._read_only,
                )
            return self._pool

    async def close(self) -> None:
        """Close the pool if it was ever opened."""
        if self._pool is not None:
            await self._pool.close()
