"""Sign-in to the dashboard: OAuth 2.0 authorization code with PKCE; no token in any URL.

A browser without a session is sent to the identity provider's authorization endpoint
(Cognito's hosted UI in AWS, the local stack's sign-in server locally) with a fresh
``state`` and the S256 challenge of a fresh PKCE verifier; both are kept in a short-lived
HttpOnly cookie of their own (``SameSite=Lax``: it must come back with the provider's
redirect, a navigation from another site). The provider sends the browser back to
``/auth/callback`` with a one-time code; the dashboard exchanges the code and the verifier
at the token endpoint, server to server (in AWS through the private token relay), checks
the access token like any other and keeps it in the session cookie: HttpOnly, SameSite=Strict,
Secure outside local and test, expiring with the token. A bearer token is never read from a
URL: a request that carries one in its query string is refused.

Signing out (``POST /auth/signout``, from the dashboard's own pages only) deletes the
session cookie and, where the provider has a logout endpoint (Cognito's ``/logout``), ends
the provider's own session too, so the next sign-in asks for the password again. The
session is the access token itself, verified by its signature, and the dashboard keeps no
refresh token: nothing is revoked, and a copy of the token taken before signing out stays
valid until it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

import httpx
import msgspec

from cardstream_shared import resource_names as names

CALLBACK_PATH: Final = names.SIGNIN_CALLBACK_PATH
SIGNIN_PATH: Final = "/auth/signin"
SIGNOUT_PATH: Final = "/auth/signout"
# What the browser carries between the redirect to the provider and its way back.
PENDING_COOKIE: Final = "cardstream_signin"
# Long enough to sign in with a password and a second factor, short enough to be useless
# later.
PENDING_MAX_AGE_S: Final = 600


class SignInError(Exception):
    """The way back from the provider is not one this browser started, or the code was
    refused; the message says why (never a code, verifier or token)."""


@dataclass(frozen=True)
class Pending:
    """A sign-in under way: the state sent to the provider and the PKCE verifier."""

    state: str
    verifier: str

    @classmethod
    def new(cls) -> Pending:
        """Fresh random values (RFC 7636: a verifier of 43 to 128 characters)."""
        return cls(state=secrets.token_urlsafe(24), verifier=secrets.token_urlsafe(48))

    @property
    def challenge(self) -> str:
        """The S256 code challenge of the verifier."""
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def cookie_value(self) -> str:
        """The pending cookie's value."""
        return f"{self.state}.{self.verifier}"

    @classmethod
    def from_cookie(cls, value: str | None, state: str | None) -> Pending:
        """The sign-in this browser started, if ``state`` is its own; :class:`SignInError`
        if not (a callback this browser did not ask for)."""
        if not value or not state or value.count(".") != 1:
            raise SignInError("no sign-in under way in this browser")
        own_state, verifier = value.split(".")
        if not hmac.compare_digest(own_state.encode(), state.encode()):
            raise SignInError("the sign-in state does not match")
        return cls(state=own_state, verifier=verifier)


def returned_code(query: Mapping[str, str]) -> str:
    """The code of the provider's redirect; :class:`SignInError` naming its error if none."""
    code = query.get("code")
    if not code:
        error = query.get("error", "no code")
        raise SignInError(f"the identity provider answered {error[:64]!r}")
    return code


@dataclass(frozen=True)
class SignInClient:
    """The dashboard as an OAuth client of the provider (a public client: PKCE, no secret).

    Attributes:
        authorize_url: the provider's authorization endpoint.
        token_url: its token endpoint, as the dashboard reaches it.
        client_id: the dashboard's (the operators') client id.
        scopes: the scopes asked for, space-separated.
        logout_url: the provider's logout endpoint, if it has one (Cognito's ``/logout``).
    """

    authorize_url: str
    token_url: str
    client_id: str
    scopes: str
    logout_url: str | None = None

    def authorization_redirect(self, pending: Pending, redirect_uri: str) -> str:
        """Where to send the browser to sign in."""
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": self.scopes,
                "state": pending.state,
                "code_challenge": pending.challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{self.authorize_url}?{query}"

    def logout_redirect(self, return_to: str) -> str | None:
        """Where to send the browser to end the provider's session (it comes back to
        ``return_to``, a sign-out URL the provider knows); None without a logout endpoint."""
        if self.logout_url is None:
            return None
        query = urlencode({"client_id": self.client_id, "logout_uri": return_to})
        return f"{self.logout_url}?{query}"

    async def exchange(
        self, http: httpx.AsyncClient, code: str, pending: Pending, redirect_uri: str
    ) -> str:
        """The access token the provider gives for ``code`` and the verifier;
        :class:`SignInError` when it gives none."""
        try:
            response = await http.post(
                self.token_url,
                data={
                    "grant_type": "authorization_code",
                    "client_id": self.client_id,
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "code_verifier": pending.verifier,
                },
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise SignInError(
                f"the token endpoint cannot be reached ({type(exc).__name__})"
            ) from None
        if response.status_code != 200:
            raise SignInError(f"the token endpoint refused the code ({response.status_code})")
        try:
            token = msgspec.json.decode(response.content).get("access_token")
        except (msgspec.DecodeError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise SignInError("the token endpoint answered without an access token")
        return token
