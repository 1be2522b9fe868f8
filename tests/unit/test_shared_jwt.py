"""Token verification rules (RFC 8725) in the one module that decodes tokens."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from jose import jwt

from cardstream_shared.jwt_auth import (
    JwksCache,
    ScopeError,
    SigningKey,
    TokenError,
    TokenVerifier,
    generate_signing_key,
    issue_token,
)

ISSUER = "cardstream-test"
AUDIENCE = "cardstream"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_signing_key("k1")


@pytest.fixture
def verifier(key: SigningKey, tmp_path: Path) -> TokenVerifier:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(key.jwks))
    return TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=JwksCache(f"file://{jwks}"))


def _token(key: SigningKey, **overrides: object) -> str:
    return issue_token(
        key,
        issuer=str(overrides.pop("issuer", ISSUER)),
        audience=str(overrides.pop("audience", AUDIENCE)),
        subject="merchant-7",
        scopes=["transactions:write"],
        extra_claims=dict(overrides),
    )


async def test_valid_token_gives_subject_and_scopes(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    principal = await verifier.verify(_token(key))
    assert principal.subject == "merchant-7"
    assert principal.client_id == "merchant-7"
    principal.require("transactions:write")
    with pytest.raises(ScopeError):
        principal.require("transactions:read")
    # A client's token names no person.
    assert principal.person is None


async def test_a_users_token_names_the_person(key: SigningKey, verifier: TokenVerifier) -> None:
    principal = await verifier.verify(_token(key, username="Ann Analyst"))
    assert (principal.subject, principal.person) == ("merchant-7", "Ann Analyst")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"issuer": "someone-else"}, "claims are invalid"),
        ({"audience": "another-api"}, "claims are invalid"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"iat": int(time.time()) + 3600}, "claims are invalid"),
    ],
)
async def test_claims_are_checked(
    key: SigningKey, verifier: TokenVerifier, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(TokenError, match=message):
        await verifier.verify(_token(key, **overrides))


async def test_required_claims_cannot_be_left_out(key: SigningKey, verifier: TokenVerifier) -> None:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "iat": int(time.time()), "exp": int(time.time()) + 60}
    token = jwt.encode(claims, key.private_pem, algorithm="RS256", headers={"kid": key.kid})
    with pytest.raises(TokenError):
        await verifier.verify(token)  # no sub


async def test_algorithm_confusion_and_none_are_refused(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": 0, "exp": 2**31}
    public_pem = json.dumps(key.jwks)
    hs = jwt.encode(claims, public_pem, algorithm="HS256", headers={"kid": key.kid})
    with pytest.raises(TokenError, match="not accepted"):
        await verifier.verify(hs)
    header = jwt.get_unverified_header(hs)
    assert header["alg"] == "HS256"
    unsigned = _b64({"alg": "none", "kid": key.kid}) + "." + _b64(claims) + "."
    with pytest.raises(TokenError):
        await verifier.verify(unsigned)


async def test_unknown_kid_refetches_at_most_once_per_interval(
    key: SigningKey, tmp_path: Path
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(key.jwks))
    cache = JwksCache(f"file://{jwks}", min_refresh_interval_s=3600)
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=cache)
    await verifier.verify(_token(key))
    rotated = generate_signing_key("k2")
    jwks.write_text(json.dumps({"keys": key.jwks["keys"] + rotated.jwks["keys"]}))
    # The new key is published, but the cache refetched moments ago: refused until the interval.
    with pytest.raises(TokenError, match="unknown key id"):
        await verifier.verify(_token(rotated))
    fresh = TokenVerifier(
        issuer=ISSUER, audience=AUDIENCE, jwks=JwksCache(f"file://{jwks}", min_refresh_interval_s=0)
    )
    await fresh.verify(_token(key))
    assert (await fresh.verify(_token(rotated))).subject == "merchant-7"


def test_symmetric_or_mixed_algorithm_lists_are_refused(tmp_path: Path) -> None:
    cache = JwksCache(f"file://{tmp_path}/none.json")
    for algorithms in [("HS256",), ("RS256", "ES256"), ()]:
        with pytest.raises(ValueError, match="one asymmetric family"):
            TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=cache, algorithms=algorithms)


def _b64(data: dict[str, object]) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_several_audiences_may_be_accepted(key: SigningKey, tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(key.jwks))
    verifier = TokenVerifier(
        issuer=ISSUER, audience="merchants, operators", jwks=JwksCache(f"file://{jwks}")
    )
    assert (await verifier.verify(_token(key, audience="operators"))).subject == "merchant-7"
    assert (await verifier.verify(_token(key, audience="merchants"))).subject == "merchant-7"
    with pytest.raises(TokenError, match="invalid audience"):
        await verifier.verify(_token(key, audience="merchants, operators"))
    with pytest.raises(TokenError, match="invalid audience"):
        await verifier.verify(_token(key, audience="someone-else"))


async def test_a_token_without_audience_is_refused(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "x", "iat": now, "exp": now + 60}
    token = jwt.encode(claims, key.private_pem, algorithm="RS256", headers={"kid": key.kid})
    with pytest.raises(TokenError, match="invalid audience"):
        await verifier.verify(token)
