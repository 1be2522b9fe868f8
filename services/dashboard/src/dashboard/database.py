"""The read-only connection pool on the dashboard role."""

from __future__ import annotations

from typing import Any

import asyncpg

from cardstream_shared.aws import aio_client
from cardstream_shared.db_credentials import dsn_from_secret
from dashboard.settings import DashboardSettings


async def resolve_dsn(settings: DashboardSettings) -> str:
    """The dashboard role's URL: DASHBOARD_DATABASE_URL, or the RDS-style secret."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    async with aio_client("secretsmanager", settings) as client:
        secret: Any = await client.get_secret_value(SecretId=settings.database_secret_id)
    return dsn_from_secret(str(secret["SecretString"]), sslmode=settings.database_sslmode)


async def create_pool(settings: DashboardSettings, dsn: str) -> asyncpg.Pool:
    """A small pool whose sessions cannot write, whatever the role's grants become."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.db_connect_timeout_s,
        command_timeout=settings.db_statement_timeout_s + 5,
        server_settings={
            "application_name": "cardstream-dashboard",
            "default_transaction_read_only": "on",
            "statement_timeout": str(int(settings.db_statement_timeout_s * 1000)),
        },
    )
    return pool
