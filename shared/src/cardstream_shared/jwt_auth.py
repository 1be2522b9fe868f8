"""Bearer-token verification (and local issuance): the only module that calls ``jose.jwt``.

Follows RFC 8725 and docs/security.md: a fixed algorithm list never taken from the token,
required ``exp``/``iat``/``iss``/``aud``/``sub`` with a small leeway, keys from the issuer's
JWKS cached with a TTL and refetched on an unknown ``kid`` at most once per interval, and
never a key location (``jku``/``x5u``) taken from the token.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
from jose import jwt
from jose.exceptions import ExpiredSignatureError, JOSEError, JWTClaimsError

DEFAULT_ALGORITHMS: Final = ("RS256",)
_REQUIRED_CLAIMS: Final = ("exp", "iat", "iss", "sub")


class TokenError(Exception):
    """The token is missing, malformed, expired, or not ours (answer 401)."""


class ScopeError(Exception):
    """The token is valid but lacks the scope the operation needs (answer 403)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's subject and its scopes."""

    subject: str
    scopes: frozenset[str]
    client_id: str
    token_id: str | None = None
    # The token's ``exp`` (Unix time): lets a caller cache the verification until then.
    expires_at: float | None = None
    # The person signed in (the ``username`` claim of a user's token); None for a client.
    person: str | None = None

    def require(self, scope: str) -> None:
        """Raise :class:`ScopeError` unless the token carries ``scope``."""
        if scope not in self.scopes:
            raise ScopeError(f"token lacks the scope {scope!r}")


class JwksCache:
    """The issuer's public keys, fetched from ``url`` (https, http or file) and cached.

    ``ttl_s`` bounds how stale keys may be (5 minutes, like the original API Gateway
    authorizer cache). The issuer is asked at most once per ``min_refresh_interval_s``,
    one request at a time, whatever asks: an unknown ``kid`` (so a flood of forged kids
    cannot flood the issuer), a stale key set, a readiness probe, or requests arriving
    while the issuer fails and no key is cached (they are refused until the next attempt
    is due, instead of each asking again). Keys already held are kept while the issuer
    cannot be reached. ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float = 300.0,
        min_refresh_interval_s: float = 30.0,
        timeout_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._ttl_s = ttl_s
        self._min_refresh_interval_s = min_refresh_interval_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _fetch(self) -> None:
        if self._url.startswith("file://"):
            text = await asyncio.to_thread(Path(self._url.removeprefix("file://")).read_text)
            document = json.loads(text)
        else:
            async with httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False) as client:
                response = await client.get(self._url)
                response.raise_for_status()
                document = response.json()
        keys = {str(k["kid"]): k for k in document.get("keys", []) if "kid" in k}
        self._keys = keys
        self._fetched_at = self._clock()

    async def _refresh(self, kid: str | None) -> bool:
        """Fetch the key set if it is stale or lacks ``kid`` and an attempt is due; under
        the lock, so one request is in flight. True when the last attempt succeeded."""
        now = self._clock()
        wanted = now - self._fetched_at >= self._ttl_s or (
            kid is not None and kid not in self._keys
        )
        if wanted and now - self._attempted_at >= self._min_refresh_interval_s:
            self._attempted_at = now
            try:
                await self._fetch()
            except (httpx.HTTPError, OSError, ValueError):
                return False
        return self._fetched_at >= self._attempted_at

    async def get(self, kid: str) -> dict[str, Any] | None:
        """The JWK for ``kid``, or None when the issuer does not publish it."""
        if self._clock() - self._fetched_at < self._ttl_s and kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            await self._refresh(kid)
            if not self._keys:
                raise TokenError("the issuer's keys cannot be fetched")
            return self._keys.get(kid)

    async def ready(self) -> bool:
        """True when the key set is held and the last attempt to fetch it succeeded: for
        readiness probes."""
        async with self._lock:
            fresh = await self._refresh(None)
        return fresh and bool(self._keys)


@dataclass
class TokenVerifier:
    """Verifies bearer tokens from one issuer for one or more audiences.

    ``audience`` is one audience or several separated by commas (in AWS: the merchant app
    client and the operators' app client, whose tokens carry different scopes).

    ``audience_claim`` is ``aud`` for standard tokens. Amazon Cognito access tokens carry
    the app client in ``client_id`` and have no ``aud``; set it to ``client_id`` there so
    the audience is still checked, never skipped. ``scope_prefix`` strips a Cognito resource
    server identifier (``cardstream/transactions:write`` -> ``transactions:write``).

    ``also_accepts`` accepts audiences beyond the configured ones when it answers True: the
    ingest-api's merchant registry, so that a merchant client created after deployment
    (``cardstream merchant add``) is an audience as soon as it has its registry entry.
    """

    issuer: str
    audience: str
    jwks: JwksCache
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway_s: int = 30
    audience_claim: str = "aud"
    scope_prefix: str = ""
    also_accepts: Callable[[str], Awaitable[bool]] | None = None
    _options: dict[str, Any] = field(init=False)
    _audiences: set[str] = field(init=False)

    def __post_init__(self) -> None:
        families = {alg[:2] for alg in self.algorithms}
        if not self.algorithms or len(families) != 1 or "HS" in families or "no" in families:
            raise ValueError("algorithms must be one asymmetric family, e.g. ('RS256',)")
        self._audiences = {a.strip() for a in self.audience.split(",") if a.strip()}
        if not self._audiences:
            raise ValueError("audience must name at least one audience")
        self._options = {f"require_{claim}": True for claim in _REQUIRED_CLAIMS}
        self._options.update(
            # The audience is required and checked below against every accepted value:
            # python-jose compares with one value only (and its require_aud forces that).
            verify_aud=False,
            require_aud=False,
            leeway=self.leeway_s,
        )

    async def verify(self, token: str) -> Principal:
        """The caller behind ``token``; raises :class:`TokenError` for any invalid token."""
        try:
            header = jwt.get_unverified_header(token)
        except JOSEError as exc:
            raise TokenError("malformed token") from exc
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise TokenError(f"algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("token has no key id")
        key = await self.jwks.get(kid)
        if key is None:
            raise TokenError("unknown key id")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(self.algorithms),
                issuer=self.issuer,
                options=self._options,
            )
        except ExpiredSignatureError as exc:
            raise TokenError("token has expired") from exc
        except JWTClaimsError as exc:
            raise TokenError(f"token claims are invalid: {exc}") from exc
        except JOSEError as exc:
            raise TokenError("token signature or format is invalid") from exc
        presented = claims.get(self.audience_claim)
        presented_set = {presented} if isinstance(presented, str) else set(presented or [])
        if not presented_set & self._audiences and not await self._accepted(presented_set):
            raise TokenError("token claims are invalid: invalid audience")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise TokenError("token has no subject")
        if claims.get("iat", 0) > time.time() + self.leeway_s:
            raise TokenError("token claims are invalid: issued in the future")
        return Principal(
            subject=subject,
            scopes=frozenset(self._scopes(claims)),
            client_id=str(claims.get("client_id") or subject),
            token_id=str(claims["jti"]) if "jti" in claims else None,
            expires_at=float(claims["exp"]),
            person=str(claims["username"]) if claims.get("username") else None,
        )

    async def _accepted(self, audiences: set[Any]) -> bool:
        if self.also_accepts is None:
            return False
        for audience in audiences:
            if isinstance(audience, str) and await self.also_accepts(audience):
                return True
        return False

    def _scopes(self, claims: dict[str, Any]) -> Iterable[str]:
        raw = claims.get("scope", claims.get("scp", ""))
        items = raw.split() if isinstance(raw, str) else [str(s) for s in raw or []]
        for item in items:
            if self.scope_prefix and item.startswith(self.scope_prefix):
                yield item.removeprefix(self.scope_prefix)
            elif not self.scope_prefix:
                yield item


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key for issuing local tokens and the JWKS that publishes its public half."""

    kid: str
    private_pem: str
    jwks: dict[str, Any]

    def to_secret_string(self) -> str:
        """Secrets Manager value for the local stack's signing key."""
        return json.dumps({"kid": self.kid, "private_pem": self.private_pem, "jwks": self.jwks})

    @classmethod
    def from_secret_string(cls, secret: str) -> SigningKey:
        """Inverse of :meth:`to_secret_string`."""
        data = json.loads(secret)
        return cls(kid=data["kid"], private_pem=data["private_pem"], jwks=data["jwks"])


def generate_signing_key(kid: str | None = None) -> SigningKey:
    """A fresh RSA-2048 key pair for the local stack and tests (never for production)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jose import jwk

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = kid or uuid.uuid4().hex[:16]
    public_jwk = jwk.construct(public_pem, "RS256").to_dict()
    public_jwk = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in public_jwk.items()}
    public_jwk.update(kid=kid, use="sig", alg="RS256")
    return SigningKey(kid=kid, private_pem=private_pem, jwks={"keys": [public_jwk]})


def issue_token(
    key: SigningKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    scopes: Iterable[str],
    ttl_s: int = 3600,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """A signed RS256 access token, as the local stack's issuer."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
        "scope": " ".join(scopes),
        "token_use": "access",
    }
    claims.update(extra_claims or {})
    return str(jwt.encode(claims, key.private_pem, algorithm="RS256", headers={"kid": key.kid}))
