"""Who may look: a token with the transactions:read scope, from a header or a cookie.

A browser cannot send a bearer header when it navigates, so the page accepts the token once
as ``?token=`` on its URL, keeps it in an HttpOnly, SameSite=Strict cookie (script on the
page cannot read it, and no other site's request carries it) and redirects to the bare URL,
so the token does not stay in the address bar. The JSON endpoint takes the same cookie or
an ``Authorization: Bearer`` header (for scripts). Every refusal is audit-logged (who,
what, when, outcome, origin) without the token.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Final

from fastapi import Request

from cardstream_shared import resource_names as names
from cardstream_shared.jwt_auth import Principal, ScopeError, TokenError, TokenVerifier
from cardstream_shared.redaction import redact_text
from dashboard.metrics import DashboardMetrics

audit_logger = logging.getLogger("dashboard.audit")

COOKIE_NAME: Final = "cardstream_dashboard"
REQUIRED_SCOPE: Final = names.SCOPE_READ
_MAX_AUDIT_TEXT: Final = 200
_CACHE_SIZE: Final = 1000


class RefusalError(Exception):
    """The request may not see the dashboard: 401 (no valid token) or 403 (no scope)."""

    def __init__(self, status: int, reason: str, subject: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.subject = subject


@dataclass
class Gatekeeper:
    """Verifies tokens (caching successes until expiry, at most the JWKS TTL) and audits."""

    verifier: TokenVerifier
    metrics: DashboardMetrics
    # A cached verification is not re-checked against the JWKS, so it must not outlive the
    # key-set TTL: a key the issuer withdrew stops being trusted within that time.
    max_cache_age_s: float
    _cache: dict[str, tuple[Principal, float]] = field(default_factory=dict)

    async def principal(self, token: str) -> Principal:
        """The reader behind ``token``; :class:`RefusalError` unless it holds the read scope."""
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None and now < cached[1]:
            principal = cached[0]
        else:
            try:
                principal = await self.verifier.verify(token)
            except TokenError as exc:
                raise RefusalError(401, str(exc)) from None
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            expires = min(principal.expires_at or now, now + self.max_cache_age_s)
            self._cache[token] = (principal, expires)
        try:
            principal.require(REQUIRED_SCOPE)
        except ScopeError:
            raise RefusalError(
                403, f"token lacks the scope {REQUIRED_SCOPE!r}", principal.subject
            ) from None
        return principal

    async def from_request(self, request: Request, *, allow_header: bool) -> Principal:
        """The reader behind the request's bearer header (if allowed) or session cookie."""
        token: str | None = None
        header = request.headers.get("authorization")
        if allow_header and header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise RefusalError(401, "malformed authorization header")
            token = value.strip()
        else:
            token = request.cookies.get(COOKIE_NAME)
        if not token:
            raise RefusalError(401, "no token")
        return await self.principal(token)

    def audit(self, request: Request, refusal: RefusalError) -> None:
        """Log a refusal and count it; the token itself is never written."""
        self.metrics.auth_refusals.labels(status=str(refusal.status)).inc()
        client = request.client
        audit_logger.warning(
            "request refused",
            extra={
                "event": "auth_refused",
                "outcome": "unauthenticated" if refusal.status == 401 else "forbidden",
                "status": refusal.status,
                "reason": _bounded(refusal.reason),
                "subject": refusal.subject,
                "required_scope": REQUIRED_SCOPE,
                "method": request.method,
                "path": _bounded(request.url.path),
                "origin": client.host if client else None,
                "forwarded_for": _bounded(request.headers.get("x-forwarded-for", "")) or None,
                "user_agent": _bounded(request.headers.get("user-agent", "")) or None,
            },
        )


def _bounded(text: str) -> str:
    return redact_text(text[:_MAX_AUDIT_TEXT])
