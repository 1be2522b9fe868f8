"""Who may call: the merchants of the registry, and the operators.

A merchant is a client with an entry in the merchant registry
(:mod:`cardstream_shared.merchant_registry`, SSM Parameter Store under
``INGEST_MERCHANT_REGISTRY_PATH``); its entry carries its own rate limit. Operators are
people signed in through the operators' client, named by ``INGEST_OPERATOR_CLIENT_IDS``:
they read and review, they never post. A token of any other client is refused with 403.

The registry is read whole at start and again every ``refresh_interval_s`` in the
background; a client that is not in it triggers a read too (at most one per
``miss_refresh_interval_s``, one at a time), so a merchant just added can post within
seconds. A read that fails keeps the entries last read. Until a first read succeeds no
merchant is known and the writes are refused with 503 (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from cardstream_shared.merchant_registry import MerchantEntry, parse_parameters

logger = logging.getLogger(__name__)

_ERRORS: Final = (ClientError, BotoCoreError, OSError, TimeoutError)


class RegistryUnavailableError(Exception):
    """The registry has never been read: no client can be told to be a merchant."""


class MerchantRegistry:
    """The registry's entries by client id, read from Parameter Store and kept fresh."""

    def __init__(
        self,
        ssm: Any,
        path: str,
        *,
        refresh_interval_s: float,
        miss_refresh_interval_s: float,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ssm = ssm
        self._path = path
        self._refresh_interval_s = refresh_interval_s
        self._miss_refresh_interval_s = miss_refresh_interval_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._entries: dict[str, MerchantEntry] | None = None
        self._attempted_at = float("-inf")
        self._last_failed = False
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        """True once a read succeeded."""
        return self._entries is not None

    @property
    def healthy(self) -> bool:
        """True when the entries are held and the last read succeeded (readiness)."""
        return self.loaded and not self._last_failed

    def entry(self, client_id: str) -> MerchantEntry | None:
        """``client_id``'s entry as last read (None: not a merchant, or nothing read yet)."""
        return None if self._entries is None else self._entries.get(client_id)

    async def lookup(self, client_id: str) -> MerchantEntry | None:
        """``client_id``'s entry, reading the registry first if the client is unknown and a
        read is due; :class:`RegistryUnavailableError` while nothing was ever read."""
        found = self.entry(client_id)
        if found is not None:
            return found
        async with self._lock:
            if self._clock() - self._attempted_at >= self._miss_refresh_interval_s:
                await self._read()
        if self._entries is None:
            raise RegistryUnavailableError("the merchant registry cannot be read")
        return self._entries.get(client_id)

    async def refresh(self) -> bool:
        """Read the registry now; True when the read succeeded."""
        async with self._lock:
            return await self._read()

    async def _read(self) -> bool:
        self._attempted_at = self._clock()
        try:
            async with asyncio.timeout(self._timeout_s):
                parameters = await self._parameters()
        except _ERRORS as exc:
            self._last_failed = True
            logger.warning(
                "merchant registry cannot be read",
                extra={"path": self._path, "error": type(exc).__name__},
            )
            return False
        entries, invalid = parse_parameters(self._path, parameters)
        for name in invalid:
            # Fail closed: a malformed entry makes no merchant.
            logger.error("merchant registry entry is not valid", extra={"parameter": name})
        self._entries = entries
        self._last_failed = False
        return True

    async def _parameters(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        paginator = self._ssm.get_paginator("get_parameters_by_path")
        async for page in paginator.paginate(Path=self._path, Recursive=False):
            found.extend(page.get("Parameters", []))
        return found

    @contextlib.asynccontextmanager
    async def refreshing(self) -> AsyncIterator[None]:
        """Read the registry once, then every ``refresh_interval_s`` until the block ends
        (and sooner while it has never been read)."""
        await self.refresh()

        async def loop() -> None:
            while True:
                pause = self._refresh_interval_s if self.loaded else self._miss_refresh_interval_s
                await asyncio.sleep(pause)
                await self.refresh()

        task = asyncio.create_task(loop(), name="merchant-registry-refresh")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
