"""Bearer-token authentication and scope checks, with a verification cache and audit log.

Verification itself is :class:`cardstream_shared.jwt_auth.TokenVerifier` (the only code that
decodes tokens). This module adds what an HTTP edge needs: 401 versus 403, an audit record
for every refusal (who, what, when, outcome, origin; never the token), and a bounded cache
of verified tokens kept until their expiry, so a request does not pay an RSA verification.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from fastapi import Request
from fastapi.security import HTTPBearer

from cardstream_shared.jwt_auth import Principal, ScopeError, TokenError, TokenVerifier
from cardstream_shared.redaction import redact_text
from ingest_api.metrics import IngestMetrics
from ingest_api.problems import ProblemError

audit_logger = logging.getLogger("ingest_api.audit")

_MAX_AUDIT_TEXT: Final = 200
# RFC 6750 3: the challenge a client gets with a 401 or 403.
_CHALLENGE: Final = 'Bearer realm="cardstream"'


class Authenticator:
    """Verifies bearer tokens, caching successes until ``exp`` (at most ``max_age_s``)."""

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        metrics: IngestMetrics,
        cache_size: int,
        max_age_s: float,
    ) -> None:
        self._verifier = verifier
        self._metrics = metrics
        self._cache_size = cache_size
        # A cached verification is not re-checked against the JWKS, so it must not outlive
        # the key-set TTL: a key the issuer withdrew stops being trusted within that time.
        self._max_age_s = max_age_s
        self._cache: dict[str, tuple[Principal, float]] = {}

    async def principal(self, token: str) -> Principal:
        """The caller behind ``token``; :class:`TokenError` when it is not valid."""
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None:
            if now < cached[1]:
                return cached[0]
            del self._cache[token]
        principal = await self._verifier.verify(token)
        if self._cache_size:
            expires = min(principal.expires_at or now, now + self._max_age_s)
            if len(self._cache) >= self._cache_size:
                self._evict(now)
            self._cache[token] = (principal, expires)
        return principal

    def _evict(self, now: float) -> None:
        expired = [token for token, (_, expires) in self._cache.items() if expires <= now]
        for token in expired:
            del self._cache[token]
        # Dicts keep insertion order: drop the oldest entries when nothing had expired.
        while len(self._cache) >= self._cache_size:
            del self._cache[next(iter(self._cache))]

    def refuse(
        self,
        request: Request,
        *,
        status: int,
        reason: str,
        principal: Principal | None = None,
        scope: str | None = None,
    ) -> ProblemError:
        """Audit-log a refusal and build the problem to raise."""
        self._metrics.auth_refusals.labels(status=str(status)).inc()
        client = request.client
        audit_logger.warning(
            "request refused",
            extra={
                "event": "auth_refused",
                "outcome": "unauthenticated" if status == 401 else "forbidden",
                "status": status,
                "reason": _bounded(reason),
                "subject": principal.subject if principal else None,
                "client_id": principal.client_id if principal else None,
                "required_scope": scope,
                "method": request.method,
                "path": _bounded(request.url.path),
                "origin": client.host if client else None,
                "forwarded_for": _bounded(request.headers.get("x-forwarded-for", "")) or None,
                "user_agent": _bounded(request.headers.get("user-agent", "")) or None,
            },
        )
        if status == 401:
            return ProblemError(
                401,
                "unauthorized",
                "a valid bearer token is required",
                headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'},
            )
        return ProblemError(
            403,
            "forbidden",
            f"the token lacks the scope {scope!r}",
            headers={
                "WWW-Authenticate": f'{_CHALLENGE}, error="insufficient_scope", scope="{scope}"'
            },
        )


def _bounded(text: str) -> str:
    return redact_text(text[:_MAX_AUDIT_TEXT])


class BearerAuth(HTTPBearer):
    """FastAPI security dependency: the caller's :class:`Principal` holding ``scope``.

    Subclassing ``HTTPBearer`` puts the bearer scheme (and Swagger UI's Authorize button)
    in the OpenAPI document while the checks stay ours.
    """

    def __init__(self, scope: str) -> None:
        super().__init__(
            bearerFormat="JWT",
            description="An access token from the cardstream issuer (Cognito in AWS).",
            auto_error=False,
            scheme_name="BearerAuth",
        )
        self.required_scope = scope

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        authenticator: Authenticator = request.app.state.runtime.authenticator
        header = request.headers.get("authorization")
        if not header:
            raise authenticator.refuse(request, status=401, reason="no bearer token")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise authenticator.refuse(request, status=401, reason="malformed authorization")
        try:
            principal = await authenticator.principal(token)
        except TokenError as exc:
            raise authenticator.refuse(request, status=401, reason=str(exc)) from None
        try:
            principal.require(self.required_scope)
        except ScopeError:
            raise authenticator.refuse(
                request,
                status=403,
                reason="missing scope",
                principal=principal,
                scope=self.required_scope,
            ) from None
        return principal
