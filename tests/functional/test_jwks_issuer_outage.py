"""The issuer's key set: asked once per interval, one request at a time, while it fails;
never a key location a token names.

The issuer is a real HTTP server on a loopback port that counts the requests it receives;
the verifier reaches it over HTTP as it reaches Cognito's JWKS URL in AWS.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from jose import jwt

from cardstream_shared.jwt_auth import (
    JwksCache,
    SigningKey,
    TokenError,
    TokenVerifier,
    generate_signing_key,
    issue_token,
)

pytestmark = pytest.mark.functional

ISSUER = "cardstream-test"
AUDIENCE = "cardstream"
INTERVAL_S = 30.0


@dataclass
class Issuer:
    """What the JWKS endpoint serves (None: 503) and how many requests it received."""

    jwks: dict[str, object] | None = None
    fetches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def issuer() -> Iterator[tuple[Issuer, str]]:
    state = Issuer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.fetches += 1
                jwks = state.jwks
            if jwks is None:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps(jwks).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_signing_key("k1")


def _token(key: SigningKey) -> str:
    return issue_token(
        key, issuer=ISSUER, audience=AUDIENCE, subject="merchant-1", scopes=["transactions:write"]
    )


async def test_a_failing_issuer_is_asked_once_for_concurrent_requests_until_the_interval(
    issuer: tuple[Issuer, str], key: SigningKey
) -> None:
    state, url = issuer
    clock = Clock()
    jwks = JwksCache(url, min_refresh_interval_s=INTERVAL_S, clock=clock)
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks)
    token = _token(key)

    outcomes = await asyncio.gather(
        *(verifier.verify(token) for _ in range(8)), return_exceptions=True
    )
    assert all(isinstance(outcome, TokenError) for outcome in outcomes)
    assert state.fetches == 1
    # Within the interval neither a request nor a readiness probe asks again.
    clock.now += INTERVAL_S - 1
    with pytest.raises(TokenError, match="cannot be fetched"):
        await verifier.verify(token)
    assert not await jwks.ready()
    assert state.fetches == 1

    # The issuer recovers; the next attempt is due after the interval, and succeeds.
    state.jwks = key.jwks
    clock.now += 1
    outcomes = await asyncio.gather(*(verifier.verify(token) for _ in range(8)))
    assert {principal.subject for principal in outcomes} == {"merchant-1"}
    assert state.fetches == 2
    assert await jwks.ready()
    assert state.fetches == 2


async def test_keys_held_are_kept_while_the_issuer_fails(
    issuer: tuple[Issuer, str], key: SigningKey
) -> None:
    state, url = issuer
    state.jwks = key.jwks
    clock = Clock()
    jwks = JwksCache(url, ttl_s=60, min_refresh_interval_s=INTERVAL_S, clock=clock)
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks)
    token = _token(key)
    await verifier.verify(token)
    state.jwks = None
    clock.now += 60
    # Stale keys: one attempt fails, the held keys keep verifying, no request asks again
    # before the interval.
    await asyncio.gather(*(verifier.verify(token) for _ in range(8)))
    assert state.fetches == 2
    assert not await jwks.ready()
    clock.now += INTERVAL_S
    await verifier.verify(token)
    assert state.fetches == 3


async def test_a_key_location_named_by_the_token_is_never_fetched(
    issuer: tuple[Issuer, str], key: SigningKey, tmp_path: Path
) -> None:
    # The attacker serves its own key set and names it in the token's header (jku, x5u).
    attacker_state, attacker_url = issuer
    attacker = generate_signing_key("attacker")
    attacker_state.jwks = attacker.jwks
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(key.jwks))
    verifier = TokenVerifier(
        issuer=ISSUER, audience=AUDIENCE, jwks=JwksCache(f"file://{jwks_file}")
    )
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "attacker",
        "iat": int(time.time()),
        "exp": int(time.time()) + 600,
    }
    for header in ({"jku": attacker_url}, {"x5u": attacker_url}):
        token = jwt.encode(
            claims, attacker.private_pem, algorithm="RS256", headers={"kid": "attacker", **header}
        )
        with pytest.raises(TokenError, match="unknown key id"):
            await verifier.verify(token)
    assert attacker_state.fetches == 0
