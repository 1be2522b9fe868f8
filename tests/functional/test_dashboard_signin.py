"""Dashboard sign-in: authorization code with PKCE against the local stack's sign-in server
(served on loopback, as ``cardstream up`` runs it); no bearer token in any URL."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn

from cardstream.local.ports import free_port, wait_for_port
from cardstream.local.signin_server import (
    DASHBOARD_CLIENT_ID,
    AuthorizationError,
    LocalAuthorizationServer,
    create_app,
)
from cardstream_shared import resource_names as names
from cardstream_shared.jwt_auth import SigningKey, generate_signing_key, issue_token
from dashboard.app import create_app as create_dashboard
from dashboard.settings import DashboardSettings
from dashboard.signin import Pending

pytestmark = pytest.mark.functional

ISSUER = "cardstream-test"
AUDIENCE = "cardstream"
DASHBOARD = "http://dashboard"
CALLBACK = f"{DASHBOARD}{names.SIGNIN_CALLBACK_PATH}"


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return generate_signing_key()


# An operator's scopes, as `cardstream up` runs the sign-in server.
OPERATOR = (names.SCOPE_READ, names.SCOPE_ALERTS_REVIEW, names.SCOPE_ALL_TENANTS)


def _server(
    key: SigningKey, scopes: tuple[str, ...] = OPERATOR, **options: Any
) -> LocalAuthorizationServer:
    return LocalAuthorizationServer(
        key=key,
        issuer=ISSUER,
        audience=AUDIENCE,
        client_id=DASHBOARD_CLIENT_ID,
        redirect_uri=CALLBACK,
        person="jdoe",
        scopes=scopes,
        **options,
    )


@contextmanager
def _serving(server: LocalAuthorizationServer) -> Iterator[str]:
    """The local sign-in server on a loopback port of its own."""
    port = free_port()
    http = uvicorn.Server(
        uvicorn.Config(create_app(server), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    try:
        wait_for_port("127.0.0.1", port, timeout_s=30, alive=thread.is_alive)
        yield f"http://127.0.0.1:{port}"
    finally:
        http.should_exit = True
        thread.join()


@pytest.fixture(scope="module")
def provider(signing_key: SigningKey) -> Iterator[str]:
    with _serving(_server(signing_key)) as url:
        yield url


@asynccontextmanager
async def dashboard(
    tmp_path: Path, signing_key: SigningKey, provider: str, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(signing_key.jwks))
    settings = DashboardSettings(
        environment="test",
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwks_url=f"file://{jwks}",
        # Nobody listens: the sign-in never needs the database.
        database_url=f"postgresql://dashboard@127.0.0.1:{free_port()}/cardstream",
        stream_name=None,
        bucket=None,
        public_url=DASHBOARD,
        signin_authorize_url=f"{provider}/oauth2/authorize",
        signin_token_url=f"{provider}/oauth2/token",
        signin_client_id=DASHBOARD_CLIENT_ID,
        **overrides,
    )
    app = create_dashboard(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=DASHBOARD) as client:
            yield client


def _state(client: httpx.AsyncClient) -> str:
    return str(client.cookies["cardstream_signin"]).split(".")[0]


async def _code(client: httpx.AsyncClient) -> tuple[str, httpx.Response]:
    """Go to sign-in; the provider's redirect back (callback URL with code and state)."""
    start = await client.get("/auth/signin")
    assert start.status_code == 303
    async with httpx.AsyncClient() as browser:
        back = await browser.get(start.headers["location"])
    assert back.status_code == 302
    return back.headers["location"], start


async def test_signing_in_sets_an_httponly_strict_cookie_and_no_url_holds_a_token(
    tmp_path: Path, signing_key: SigningKey, provider: str
) -> None:
    async with dashboard(tmp_path, signing_key, provider) as client:
        first = await client.get("/")
        callback, start = await _code(client)
        signed_in = await client.get(callback)
        page = await client.get("/")

    assert first.status_code == 303
    assert first.headers["location"] == "/auth/signin"
    sent = parse_qs(urlsplit(start.headers["location"]).query)
    assert sent["code_challenge_method"] == ["S256"]
    assert sent["redirect_uri"] == [CALLBACK]
    pending = start.headers["set-cookie"]
    assert "HttpOnly" in pending
    assert "Path=/auth/callback" in pending
    assert signed_in.status_code == 200
    session = next(
        c for c in signed_in.headers.get_list("set-cookie") if c.startswith("cardstream_dashboard=")
    )
    assert "HttpOnly" in session
    assert "SameSite=strict" in session
    # Plain http in the test environment: a Secure cookie would never come back.
    assert "Secure" not in session
    assert page.status_code == 200
    assert "Real Time Credit Card Fraud Monitoring" in page.text
    token = session.split(";")[0].removeprefix("cardstream_dashboard=")
    for location in (first.headers["location"], start.headers["location"], callback):
        assert token not in location
        assert "token" not in parse_qs(urlsplit(location).query)


async def test_a_person_without_the_operator_scope_is_refused_and_gets_no_session(
    tmp_path: Path, signing_key: SigningKey
) -> None:
    # Signed in, but allowed to read one tenant's transactions only: the page shows all.
    with _serving(_server(signing_key, scopes=(names.SCOPE_READ,))) as reader_only:
        async with dashboard(tmp_path, signing_key, reader_only) as client:
            callback, _ = await _code(client)
            refused = await client.get(callback)
            page = await client.get("/")

    assert refused.status_code == 403
    assert "Access denied" in refused.text
    assert names.SCOPE_ALL_TENANTS in refused.text
    assert "cardstream_dashboard=" not in refused.headers.get("set-cookie", "")
    assert "cardstream_dashboard" not in client.cookies
    # Still no session: the page sends the browser to sign in again, never shows data.
    assert page.status_code == 303
    assert page.headers["location"] == "/auth/signin"


async def _signed_in(client: httpx.AsyncClient) -> str:
    """Sign ``client`` in; its session token."""
    callback, _ = await _code(client)
    assert (await client.get(callback)).status_code == 200
    return str(client.cookies["cardstream_dashboard"])


async def test_signing_out_deletes_the_session_and_the_next_page_load_signs_in_again(
    tmp_path: Path, signing_key: SigningKey, provider: str
) -> None:
    async with dashboard(tmp_path, signing_key, provider) as client:
        token = await _signed_in(client)
        page = await client.get("/")
        # What Chromium sends from the page: its referrer policy (no-referrer) makes the
        # origin opaque, Sec-Fetch-Site still says it is the dashboard's own.
        signed_out = await client.post(
            "/auth/signout", headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"}
        )
        after = await client.get("/")
        feed = await client.get("/api/dashboard")
        # The session is the token itself and nothing is revoked: a copy of it taken before
        # signing out still opens the feed until it expires (docs/dashboard.md).
        copy = await client.get("/api/dashboard", headers={"Authorization": f"Bearer {token}"})

    # The page offers sign-out, a form its Content-Security-Policy lets it post.
    assert '<form class="signout" method="post" action="/auth/signout">' in page.text
    assert "form-action 'self'" in page.headers["content-security-policy"]
    assert signed_out.status_code == 200
    assert "Signed out" in signed_out.text
    assert '<a href="/auth/signin">Sign in again</a>' in signed_out.text
    assert "http-equiv" not in signed_out.text  # no provider logout endpoint here
    deleted = next(
        c
        for c in signed_out.headers.get_list("set-cookie")
        if c.startswith("cardstream_dashboard=")
    )
    assert deleted.startswith('cardstream_dashboard=""')
    assert "Max-Age=0" in deleted
    assert "Path=/" in deleted
    assert "cardstream_dashboard" not in client.cookies
    assert after.status_code == 303
    assert after.headers["location"] == "/auth/signin"
    assert feed.status_code == 401
    assert copy.status_code == 200


async def test_signing_out_ends_the_providers_session_where_it_has_a_logout_endpoint(
    tmp_path: Path, signing_key: SigningKey, provider: str
) -> None:
    logout = "https://sign-in.example/logout"
    async with dashboard(tmp_path, signing_key, provider, signout_url=logout) as client:
        await _signed_in(client)
        signed_out = await client.post("/auth/signout", headers={"Origin": DASHBOARD})

    assert signed_out.status_code == 200
    assert "cardstream_dashboard" not in client.cookies
    # Cognito's /logout ends the hosted UI's session and sends the browser back to the
    # dashboard's address (a sign-out URL of the operators' client), which asks for sign-in.
    expected = f"{logout}?client_id={DASHBOARD_CLIENT_ID}&amp;logout_uri=http%3A%2F%2Fdashboard%2F"
    assert f'<meta http-equiv="refresh" content="0;url={expected}">' in signed_out.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": DASHBOARD, "Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "same-origin"},
    ],
)
async def test_a_sign_out_another_site_asks_for_is_refused(
    tmp_path: Path, signing_key: SigningKey, provider: str, headers: dict[str, str]
) -> None:
    async with dashboard(tmp_path, signing_key, provider) as client:
        await _signed_in(client)
        refused = await client.post("/auth/signout", headers=headers)
        by_link = await client.get("/auth/signout")
        page = await client.get("/")

    assert refused.status_code == 403
    assert "Sign-out refused" in refused.text
    assert "set-cookie" not in refused.headers
    # Only a POST signs out; a link or an image cannot.
    assert by_link.status_code == 405
    assert page.status_code == 200


async def test_a_code_works_once(tmp_path: Path, signing_key: SigningKey, provider: str) -> None:
    async with dashboard(tmp_path, signing_key, provider) as client:
        callback, _ = await _code(client)
        pending = client.cookies["cardstream_signin"]
        assert (await client.get(callback)).status_code == 200
        client.cookies.clear()
        # The same way back again, pending cookie and all: the code is spent.
        client.cookies.set("cardstream_signin", pending, path="/auth/callback")
        again = await client.get(callback)

    assert again.status_code == 400
    assert "the token endpoint refused the code (400)" in again.text
    assert "cardstream_dashboard=" not in again.headers.get("set-cookie", "")


async def test_a_callback_this_browser_did_not_start_is_refused(
    tmp_path: Path, signing_key: SigningKey, provider: str
) -> None:
    async with dashboard(tmp_path, signing_key, provider) as client:
        callback, _ = await _code(client)
        client.cookies.clear()
        # Another browser's code, sent to this one (login CSRF): no pending sign-in here.
        stranger = await client.get(callback)
        _, _ = await _code(client)
        # This browser's own sign-in under way, but another state comes back.
        wrong_state = await client.get(callback.replace("state=", "state=x"))
        _, _ = await _code(client)
        injected = await client.get("/auth/callback?error=<b>x</b>&state=" + _state(client))

    assert stranger.status_code == 400
    assert "no sign-in under way" in stranger.text
    # The provider's error is shown as text, never as markup.
    assert injected.status_code == 400
    assert "&lt;b&gt;x&lt;/b&gt;" in injected.text
    assert "<b>x</b>" not in injected.text
    assert wrong_state.status_code == 400
    assert "state does not match" in wrong_state.text


async def test_a_token_in_a_url_is_refused_and_never_read(
    tmp_path: Path, signing_key: SigningKey, provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = issue_token(
        signing_key, issuer=ISSUER, audience=AUDIENCE, subject="analyst", scopes=OPERATOR
    )
    async with dashboard(tmp_path, signing_key, provider) as client:
        page = await client.get(f"/?token={token}")
        feed = await client.get(f"/api/dashboard?access_token={token}")
        callback = await client.get(f"/auth/callback?token={token}")

    for response in (page, feed, callback):
        assert response.status_code == 400
        assert "never takes a token from its address" in response.text
        assert "set-cookie" not in response.headers
    assert token not in caplog.text
    assert [r.path for r in caplog.records if getattr(r, "event", "") == "token_in_url"] == [  # type: ignore[attr-defined]
        "/",
        "/api/dashboard",
        "/auth/callback",
    ]


def test_the_local_provider_gives_a_code_once_within_a_minute_for_its_verifier(
    signing_key: SigningKey,
) -> None:
    now = [0.0]
    server = _server(signing_key, clock=lambda: now[0])
    verifier = "v" * 50
    # S256 of the verifier, as the dashboard computes it.
    challenge = Pending(state="s", verifier=verifier).challenge

    def code() -> str:
        location = server.authorize(
            {
                "response_type": "code",
                "client_id": DASHBOARD_CLIENT_ID,
                "redirect_uri": CALLBACK,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "state": "s",
            }
        )
        return parse_qs(urlsplit(location).query)["code"][0]

    def exchange(value: str, proof: str = verifier) -> dict[str, object]:
        return server.token(
            {
                "grant_type": "authorization_code",
                "client_id": DASHBOARD_CLIENT_ID,
                "code": value,
                "redirect_uri": CALLBACK,
                "code_verifier": proof,
            }
        )

    once = code()
    assert exchange(once)["token_type"] == "Bearer"
    with pytest.raises(AuthorizationError, match="unknown, used or expired"):
        exchange(once)
    late = code()
    now[0] += 60.0
    with pytest.raises(AuthorizationError, match="unknown, used or expired"):
        exchange(late)
    with pytest.raises(AuthorizationError, match="code_verifier does not match"):
        exchange(code(), proof="w" * 50)
    with pytest.raises(AuthorizationError, match="unknown redirect_uri"):
        server.authorize({"client_id": DASHBOARD_CLIENT_ID, "redirect_uri": "https://evil"})
