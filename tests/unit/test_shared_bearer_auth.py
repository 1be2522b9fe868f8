"""The one bearer authentication of every HTTP edge: its cache, its refusals, its audit."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cardstream_shared.bearer_auth import BearerAuthenticator, RefusalError, bearer_token
from cardstream_shared.jwt_auth import (
    JwksCache,
    Principal,
    SigningKey,
    TokenVerifier,
    generate_signing_key,
    issue_token,
)

pytestmark = pytest.mark.unit

ISSUER = "cardstream-test"
AUDIENCE = "cardstream"
AUDIT = logging.getLogger("test.audit")


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_signing_key("k1")


class CountingVerifier(TokenVerifier):
    """The real verifier, counting the verifications it performs."""

    calls: int = 0

    async def verify(self, token: str) -> Principal:
        self.calls += 1
        return await super().verify(token)


@pytest.fixture
def verifier(key: SigningKey, tmp_path: Path) -> CountingVerifier:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(key.jwks))
    return CountingVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=JwksCache(f"file://{jwks}"))


@dataclass
class Clock:
    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


def _token(key: SigningKey, subject: str = "merchant-1", ttl_s: int = 3600, **extra: Any) -> str:
    return issue_token(
        key,
        issuer=ISSUER,
        audience=AUDIENCE,
        subject=subject,
        scopes=["transactions:write"],
        ttl_s=ttl_s,
        extra_claims=extra,
    )


def _authenticator(
    verifier: TokenVerifier, clock: Clock, *, cache_size: int = 10, max_age_s: float = 300
) -> BearerAuthenticator:
    return BearerAuthenticator(
        verifier, cache_size=cache_size, max_age_s=max_age_s, audit_logger=AUDIT, clock=clock
    )


async def test_a_verified_token_is_served_from_the_cache(
    key: SigningKey, verifier: CountingVerifier
) -> None:
    auth = _authenticator(verifier, Clock())
    token = _token(key)
    first = await auth.principal(token)
    assert await auth.principal(token) == first
    assert verifier.calls == 1


async def test_a_cached_entry_never_outlives_the_tokens_exp(
    key: SigningKey, verifier: CountingVerifier
) -> None:
    clock = Clock()
    auth = _authenticator(verifier, clock, max_age_s=3600)
    token = _token(key, ttl_s=60)
    principal = await auth.principal(token)
    assert principal.expires_at is not None
    clock.now = principal.expires_at - 1
    await auth.principal(token)
    assert verifier.calls == 1
    # Past exp the cache does not answer; the verifier does (and, at the token's real
    # expiry, refuses it).
    clock.now = principal.expires_at
    await auth.principal(token)
    assert verifier.calls == 2


async def test_a_cached_entry_lives_at_most_max_age(
    key: SigningKey, verifier: CountingVerifier
) -> None:
    clock = Clock()
    auth = _authenticator(verifier, clock, max_age_s=30)
    token = _token(key, ttl_s=3600)
    await auth.principal(token)
    clock.now += 29
    await auth.principal(token)
    assert verifier.calls == 1
    clock.now += 1
    await auth.principal(token)
    assert verifier.calls == 2


async def test_the_cache_is_bounded_and_evicts_the_least_recently_used(
    key: SigningKey, verifier: CountingVerifier
) -> None:
    auth = _authenticator(verifier, Clock(), cache_size=3)
    tokens = [_token(key, subject=f"merchant-{i}") for i in range(4)]
    for token in tokens[:3]:
        await auth.principal(token)
    # tokens[0] is used again, so tokens[1] is now the least recently used.
    await auth.principal(tokens[0])
    await auth.principal(tokens[3])
    assert verifier.calls == 4
    await auth.principal(tokens[0])
    await auth.principal(tokens[2])
    await auth.principal(tokens[3])
    assert verifier.calls == 4
    await auth.principal(tokens[1])
    assert verifier.calls == 5


async def test_no_cache_verifies_every_time(key: SigningKey, verifier: CountingVerifier) -> None:
    auth = _authenticator(verifier, Clock(), cache_size=0)
    token = _token(key)
    await auth.principal(token)
    await auth.principal(token)
    assert verifier.calls == 2


async def test_invalid_token_is_a_401_and_a_missing_scope_a_403(
    key: SigningKey, verifier: CountingVerifier
) -> None:
    auth = _authenticator(verifier, Clock())
    with pytest.raises(RefusalError) as invalid:
        await auth.principal(_token(key, ttl_s=-3600))
    assert invalid.value.status == 401
    assert invalid.value.challenge == 'Bearer realm="cardstream", error="invalid_token"'
    assert invalid.value.detail == "a valid bearer token is required"
    with pytest.raises(RefusalError) as forbidden:
        await auth.principal(_token(key, username="Ann"), "alerts:review")
    assert forbidden.value.status == 403
    assert forbidden.value.challenge == (
        'Bearer realm="cardstream", error="insufficient_scope", scope="alerts:review"'
    )
    assert forbidden.value.principal is not None
    assert forbidden.value.principal.person == "Ann"


async def test_every_scope_asked_is_required_and_the_first_missing_one_is_named(
    key: SigningKey, verifier: CountingVerifier
) -> None:
    auth = _authenticator(verifier, Clock())
    token = _token(key)
    assert (await auth.principal(token, "transactions:write")).subject == "merchant-1"
    with pytest.raises(RefusalError) as forbidden:
        await auth.principal(token, "transactions:write", "tenants:all", "alerts:review")
    assert forbidden.value.status == 403
    assert forbidden.value.scope == "tenants:all"


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   "])
def test_a_missing_or_malformed_header_is_a_401(header: str | None) -> None:
    with pytest.raises(RefusalError) as refused:
        bearer_token(header)
    assert refused.value.status == 401


def test_the_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token("bearer abc.def.ghi ") == "abc.def.ghi"


@dataclass
class _Url:
    path: str


@dataclass
class _Client:
    host: str


@dataclass
class _Request:
    method: str
    url: _Url
    client: _Client | None
    headers: dict[str, str]


async def test_every_refusal_is_audited_with_who_what_and_origin_never_the_token(
    key: SigningKey, verifier: CountingVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    counted: list[int] = []
    auth = BearerAuthenticator(
        verifier,
        cache_size=10,
        max_age_s=300,
        audit_logger=AUDIT,
        on_refusal=lambda refusal: counted.append(refusal.status),
    )
    token = _token(key, subject="reader-7", username="Ann")
    request = _Request(
        "GET",
        _Url("/v1/alerts"),
        _Client("203.0.113.7"),
        {"x-forwarded-for": "198.51.100.1", "user-agent": "curl/8", "authorization": token},
    )
    caplog.set_level(logging.INFO, logger=AUDIT.name)
    with pytest.raises(RefusalError) as refused:
        await auth.principal(token, "alerts:review")
    auth.audit(request, refused.value)
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "auth_refused"]
    logged = {name: getattr(record, name) for name in vars(record)}
    assert {
        k: logged[k]
        for k in (
            "outcome",
            "status",
            "subject",
            "person",
            "required_scope",
            "method",
            "path",
            "origin",
            "forwarded_for",
            "user_agent",
        )
    } == {
        "outcome": "forbidden",
        "status": 403,
        "subject": "reader-7",
        "person": "Ann",
        "required_scope": "alerts:review",
        "method": "GET",
        "path": "/v1/alerts",
        "origin": "203.0.113.7",
        "forwarded_for": "198.51.100.1",
        "user_agent": "curl/8",
    }
    assert token not in json.dumps(logged, default=str)
    assert counted == [403]
