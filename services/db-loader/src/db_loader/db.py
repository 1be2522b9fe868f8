"""The loader's database sessions: their application name and the connection type code
running inside a load works with.

The pool itself is :func:`cardstream_shared.database.create_pool` on the URL
:func:`cardstream_shared.database.database_url` resolves (the loader role's secret or
``LOADER_DATABASE_URL``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypeAlias

import asyncpg

# What the loader's sessions are called in pg_stat_activity and the server's logs.
APPLICATION_NAME: Final = "cardstream-db-loader"

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # A pooled connection or a plain one.
    DbConnection: TypeAlias = (
        asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
    )
