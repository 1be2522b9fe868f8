"""Bearer-token authentication at an HTTP edge: 401 versus 403, a cache, an audit record.

Verification itself is :class:`cardstream_shared.jwt_auth.TokenVerifier` (the only code that
decodes tokens). This module adds what every service answering HTTP needs around it:

- the token taken from an ``Authorization: Bearer`` header (RFC 6750);
- a bounded cache of verified tokens, so a request does not pay an RSA verification. One
  eviction policy: when the cache is full the least recently used entry goes first, and an
  entry is never used after the token's ``exp`` nor longer than ``max_age_s`` (a cached
  verification is not checked against the key set again, so it must not outlive the
  key-set TTL: a key the issuer withdrew stops being trusted within that time);
- :class:`RefusalError`, with the status, the ``WWW-Authenticate`` challenge and a detail that
  names no secret;
- an audit record for every refusal (who, what, when, outcome, origin), never the token.

It knows no web framework: a request is anything with the few attributes of
:class:`HttpRequest` (Starlette's ``Request`` has them).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Protocol

from cardstream_shared.jwt_auth import Principal, ScopeError, TokenError, TokenVerifier
from cardstream_shared.redaction import redact_text

_MAX_AUDIT_TEXT: Final = 200
# RFC 6750 3: the challenge a client gets with a 401 or 403.
_REALM: Final = 'Bearer realm="cardstream"'


class RefusalError(Exception):
    """The request may not go on: 401 (no valid token) or 403 (valid, but not allowed).

    ``reason`` is for the audit record; :attr:`detail` is what the caller is told.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        principal: Principal | None = None,
        scope: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.principal = principal
        self.scope = scope
        self._detail = detail

    @property
    def title(self) -> str:
        """The problem's title: ``Unauthorized`` or ``Forbidden``."""
        return "Unauthorized" if self.status == 401 else "Forbidden"

    @property
    def detail(self) -> str:
        """What the caller is told (never the token, never a secret)."""
        if self._detail is not None:
            return self._detail
        if self.status == 401:
            return "a valid bearer token is required"
        return f"the token lacks the scope {self.scope!r}"

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` header value (RFC 6750 3.1)."""
        if self.status == 401:
            return f'{_REALM}, error="invalid_token"'
        if self.scope is not None:
            return f'{_REALM}, error="insufficient_scope", scope="{self.scope}"'
        return _REALM


class _Url(Protocol):
    @property
    def path(self) -> str: ...


class _Client(Protocol):
    @property
    def host(self) -> str: ...


class HttpRequest(Protocol):
    """What an audit record reads from a request (Starlette's ``Request`` fits)."""

    @property
    def method(self) -> str: ...

    @property
    def url(self) -> _Url: ...

    @property
    def client(self) -> _Client | None: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


# Query parameters that would carry a bearer token (OAuth's access_token, and the common
# others): a URL is logged by load balancers and kept in browser history, so a request
# naming one is refused without reading it, even beside a good header.
TOKEN_PARAMETERS: Final = frozenset({"token", "access_token", "id_token"})


def token_in_url(query_names: Iterable[str]) -> bool:
    """Whether a request's query parameter names include one of :data:`TOKEN_PARAMETERS`
    (in any case)."""
    return any(name.lower() in TOKEN_PARAMETERS for name in query_names)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header; :class:`RefusalError` (401) otherwise."""
    if not authorization:
        raise RefusalError(401, "no bearer token")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise RefusalError(401, "malformed authorization")
    return token


class BearerAuthenticator:
    """Verifies bearer tokens through a bounded cache and audits every refusal.

    ``on_refusal`` is called with each audited refusal (a service counts them in its own
    metrics); ``audit_logger`` receives the records. ``clock`` is Unix time, the scale of a
    token's ``exp``.
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        cache_size: int,
        max_age_s: float,
        audit_logger: logging.Logger,
        on_refusal: Callable[[RefusalError], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if cache_size < 0 or max_age_s < 0:
            raise ValueError("cache_size and max_age_s must not be negative")
        self.verifier = verifier
        self._cache_size = cache_size
        self._max_age_s = max_age_s
        self._audit_logger = audit_logger
        self._on_refusal = on_refusal
        self._clock = clock
        # token -> (principal, Unix time after which the entry is not used)
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def principal(self, token: str, *scopes: str) -> Principal:
        """The caller behind ``token``, holding every one of ``scopes``; :class:`RefusalError`
        if not (a 403 names the first scope missing)."""
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None and now < cached[1]:
            self._cache.move_to_end(token)
            principal = cached[0]
        else:
            if cached is not None:
                del self._cache[token]
            try:
                principal = await self.verifier.verify(token)
            except TokenError as exc:
                raise RefusalError(401, str(exc)) from None
            self._remember(token, principal, now)
        for scope in scopes:
            try:
                principal.require(scope)
            except ScopeError:
                raise RefusalError(403, "missing scope", principal=principal, scope=scope) from None
        return principal

    def _remember(self, token: str, principal: Principal, now: float) -> None:
        if not self._cache_size:
            return
        until = now + self._max_age_s
        if principal.expires_at is not None:
            until = min(until, principal.expires_at)
        if until <= now:
            return
        self._cache[token] = (principal, until)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def audit(self, request: HttpRequest, refusal: RefusalError) -> None:
        """Write the refusal's audit record and count it; the token itself is never written."""
        if self._on_refusal is not None:
            self._on_refusal(refusal)
        principal = refusal.principal
        client = request.client
        headers = request.headers
        self._audit_logger.warning(
            "request refused",
            extra={
                "event": "auth_refused",
                "outcome": "unauthenticated" if refusal.status == 401 else "forbidden",
                "status": refusal.status,
                "reason": _bounded(refusal.reason),
                "subject": principal.subject if principal else None,
                "client_id": principal.client_id if principal else None,
                "person": principal.person if principal else None,
                "required_scope": refusal.scope,
                "method": request.method,
                "path": _bounded(request.url.path),
                "origin": client.host if client else None,
                "forwarded_for": _bounded(headers.get("x-forwarded-for", "")) or None,
                "user_agent": _bounded(headers.get("user-agent", "")) or None,
            },
        )


def _bounded(text: str) -> str:
    return redact_text(text[:_MAX_AUDIT_TEXT])
