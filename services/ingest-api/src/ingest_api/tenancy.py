"""Whose rows a request reads, and the database transaction that reads them so.

The tenant of a transaction (and of its alerts) is the client that posted it. A caller
reads its own tenant's rows (``Principal.client_id``) unless it is an operator (a client
of ``INGEST_OPERATOR_CLIENT_IDS``) holding ``tenants:all``. The decision is enforced
twice: the queries filter on the tenant, and PostgreSQL's row-level security filters on
the settings :func:`scoped` makes at the start of the request's database transaction
(``set_config(..., true)``: ``SET LOCAL``, gone at its end, so a pooled connection carries
nothing to the next request). A query that forgets its filter still reads only the
caller's rows; a session that sets nothing reads none.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from cardstream_shared import resource_names as names
from cardstream_shared.jwt_auth import Principal

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

_SCOPE: Final = (
    "SELECT set_config('cardstream.tenant', $1, true),"
    " set_config('cardstream.all_tenants', $2, true)"
)


@dataclass(frozen=True, slots=True)
class TenantScope:
    """The tenant a caller reads as, and whether it reads every tenant (an operator)."""

    client_id: str
    all_tenants: bool

    @classmethod
    def of(cls, principal: Principal, *, operator: bool) -> TenantScope:
        """The scope ``principal``'s token grants: every tenant to an ``operator`` (a client
        of the operators) holding ``tenants:all``; a merchant's client reads its own tenant
        whatever scopes its token names."""
        return cls(principal.client_id, operator and names.SCOPE_ALL_TENANTS in principal.scopes)

    @property
    def only(self) -> str | None:
        """The one tenant whose rows a query may return; None: every tenant's."""
        return None if self.all_tenants else self.client_id


@contextlib.asynccontextmanager
async def scoped(
    pool: asyncpg.Pool, scope: TenantScope
) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
    """A connection in a transaction whose row-level security reads as ``scope``."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_SCOPE, scope.client_id, "on" if scope.all_tenants else "off")
        yield conn
