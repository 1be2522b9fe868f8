"""Reads of loaded transactions through the read-only api role.

The api role may only SELECT from ``cardstream.transaction_detail`` (one row per
transaction, card already masked), so even a bug here cannot write or see a card token.
The pool is created on first use: ingestion must keep working while the database is down.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import asyncpg
from botocore.exceptions import BotoCoreError, ClientError

from cardstream_shared.db_credentials import dsn_from_secret
from ingest_api.settings import IngestSettings

logger = logging.getLogger(__name__)

# Parameterised, columns fixed here: no SQL is built from request input (OWASP API8).
# A client reads only its own transactions (OWASP API1, object-level authorization);
# someone else's trans_num answers 404 exactly like a missing one.
_SELECT: Final = """
SELECT trans_num, trans_date_trans_time, unix_time, amt, category, merchant,
       merch_lat, merch_long, card_masked, card_last4, "first", "last", gender, street,
       city, state, "zip", lat, "long", city_pop, job, dob, is_fraud, client_id,
       received_at, s3_bucket, s3_key, loaded_at
FROM cardstream.transaction_detail
WHERE trans_num = $1 AND client_id = $2
"""


class DatabaseUnavailableError(Exception):
    """The database cannot be reached or is not configured (answer 503)."""


class TransactionReader:
    """Looks transactions up in the view; owns a lazily created asyncpg pool."""

    def __init__(self, settings: IngestSettings, secrets_client: Any) -> None:
        self._settings = settings
        self._secrets = secrets_client
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _dsn(self) -> str:
        if self._settings.database_url is not None:
            return self._settings.database_url.get_secret_value()
        if not self._settings.database_secret_id:
            raise DatabaseUnavailableError("no database is configured")
        response = await self._secrets.get_secret_value(SecretId=self._settings.database_secret_id)
        return dsn_from_secret(response["SecretString"], sslmode=self._settings.database_sslmode)

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                timeout_ms = int(self._settings.db_statement_timeout_s * 1000)
                self._pool = await asyncpg.create_pool(
                    await self._dsn(),
                    min_size=self._settings.pool_min_size,
                    max_size=self._settings.pool_max_size,
                    timeout=self._settings.db_statement_timeout_s,
                    command_timeout=self._settings.db_statement_timeout_s,
                    server_settings={
                        "application_name": "cardstream-ingest-api",
                        "statement_timeout": str(timeout_ms),
                        "default_transaction_read_only": "on",
                    },
                )
            return self._pool

    async def find(self, trans_num: str, *, client_id: str) -> dict[str, Any] | None:
        """The transaction's row, or None when it is absent or belongs to another client."""
        try:
            pool = await self._get_pool()
            row = await pool.fetchrow(_SELECT, trans_num, client_id)
        except DatabaseUnavailableError:
            raise
        except (
            OSError,
            TimeoutError,
            ValueError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            ClientError,
            BotoCoreError,
        ) as exc:
            # ValueError: a malformed database secret; botocore errors: the secret fetch.
            logger.warning("transaction lookup failed", extra={"error": type(exc).__name__})
            raise DatabaseUnavailableError(type(exc).__name__) from None
        return dict(row) if row is not None else None

    async def close(self) -> None:
        """Close the pool if it was ever opened."""
        if self._pool is not None:
            await self._pool.close()
