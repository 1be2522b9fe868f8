"""Reads of loaded transactions through the read-only api role.

The api role may only SELECT from ``cardstream.tenant_transaction_detail`` (one row per
transaction, card already masked), so even a bug here cannot write or see a card token.
A caller reads only its own tenant's transactions (OWASP API1, object-level
authorization), by the query's filter and by the database's row-level security
(:mod:`ingest_api.tenancy`); someone else's trans_num answers exactly like a missing one.
The pool is created on first use: ingestion must keep working while the database is down.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from ingest_api.database import DATABASE_ERRORS, DatabaseUnavailableError, LazyPool
from ingest_api.settings import IngestSettings
from ingest_api.tenancy import TenantScope, scoped

__all__ = ["DatabaseUnavailableError", "TransactionReader"]

logger = logging.getLogger(__name__)

# Parameterised, columns fixed here: no SQL is built from request input (OWASP API8).
# $2 is the caller's tenant, NULL for an operator.
_SELECT: Final = """
SELECT trans_num, trans_date_trans_time, unix_time, amt, category, merchant,
       merch_lat, merch_long, card_masked, card_last4, "first", "last", gender, street,
       city, state, "zip", lat, "long", city_pop, job, dob, is_fraud, client_id,
       received_at, s3_bucket, s3_key, loaded_at
FROM cardstream.tenant_transaction_detail
WHERE trans_num = $1 AND ($2::text IS NULL OR client_id = $2)
"""


class TransactionReader:
    """Looks transactions up in the view, on a read-only pool opened on first use."""

    def __init__(self, settings: IngestSettings, secrets_client: Any) -> None:
        self._pool = LazyPool(
            settings,
            secrets_client,
            application_name="cardstream-ingest-api",
            read_only=True,
            min_size=settings.pool_min_size,
        )

    async def find(self, trans_num: str, scope: TenantScope) -> dict[str, Any] | None:
        """The transaction's row, or None when it is absent or ``scope`` may not read it."""
        try:
            pool = await self._pool.get()
            async with scoped(pool, scope) as conn:
                row = await conn.fetchrow(_SELECT, trans_num, scope.only)
        except DatabaseUnavailableError:
            raise
        except DATABASE_ERRORS as exc:
            logger.warning("transaction lookup failed", extra={"error": type(exc).__name__})
            raise DatabaseUnavailableError(type(exc).__name__) from None
        return dict(row) if row is not None else None

    async def close(self) -> None:
        """Close the pool if it was ever opened."""
        await self._pool.close()
