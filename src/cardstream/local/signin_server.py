"""The local stack's sign-in server: what Cognito's hosted UI and token endpoint are in AWS.

The dashboard signs its operators in the same way everywhere: authorization code with PKCE
(``dashboard.signin``). Locally the provider is this process, run by ``cardstream up`` on
loopback (and by compose.yaml as its ``sign-in`` service, published on loopback):
``GET /oauth2/authorize`` signs in the local developer (no password: the stack is a
developer's own, on loopback) and sends the browser back to the dashboard with a one-time
code; ``POST /oauth2/token`` exchanges that code, once, within a minute and with the PKCE
verifier whose challenge it was issued for, for an access token signed with the local
issuer's key. No token ever travels in a URL.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from cardstream_shared.jwt_auth import SigningKey, issue_token

CODE_TTL_S: Final = 60.0
TOKEN_TTL_S: Final = 8 * 3600
# The dashboard's client id at this server.
DASHBOARD_CLIENT_ID: Final = "dashboard-local"


class AuthorizationError(ValueError):
    """A request this server refuses; the message is the OAuth error code's description."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error


@dataclass
class _Grant:
    challenge: str
    redirect_uri: str
    expires_at: float


@dataclass
class LocalAuthorizationServer:
    """One client (the dashboard) at one callback URL; one person (the local developer).

    Attributes:
        key: the local issuer's signing key.
        issuer, audience: the claims of the tokens it issues.
        client_id, redirect_uri: the only client and the only callback it serves.
        person: the subject and ``username`` of the tokens.
        scopes: the scopes of the tokens.
    """

    key: SigningKey
    issuer: str
    audience: str
    client_id: str
    redirect_uri: str
    person: str
    scopes: tuple[str, ...]
    clock: Callable[[], float] = time.monotonic
    _grants: dict[str, _Grant] = field(default_factory=dict)

    def authorize(self, query: Mapping[str, str]) -> str:
        """The redirect to the client with a fresh code; :class:`AuthorizationError` for a
        request that names another client or callback, or no S256 challenge."""
        if query.get("client_id") != self.client_id:
            raise AuthorizationError("unauthorized_client", "unknown client")
        if query.get("redirect_uri") != self.redirect_uri:
            raise AuthorizationError("invalid_request", "unknown redirect_uri")
        if query.get("response_type") != "code":
            raise AuthorizationError("unsupported_response_type", "response_type must be code")
        challenge = query.get("code_challenge", "")
        if query.get("code_challenge_method") != "S256" or len(challenge) != 43:
            raise AuthorizationError("invalid_request", "an S256 code_challenge is required")
        now = self.clock()
        for expired in [code for code, grant in self._grants.items() if grant.expires_at <= now]:
            del self._grants[expired]
        code = secrets.token_urlsafe(32)
        self._grants[code] = _Grant(challenge, self.redirect_uri, now + CODE_TTL_S)
        answer = {"code": code}
        if "state" in query:
            answer["state"] = query["state"]
        return f"{self.redirect_uri}?{urlencode(answer)}"

    def token(self, form: Mapping[str, str]) -> dict[str, object]:
        """The access token for a code, used once, within its minute, with its verifier;
        :class:`AuthorizationError` (``invalid_grant``) otherwise."""
        if form.get("grant_type") != "authorization_code":
            raise AuthorizationError("unsupported_grant_type", "authorization_code only")
        if form.get("client_id") != self.client_id:
            raise AuthorizationError("invalid_client", "unknown client")
        # Taken out first: a code is spent by its first use, whatever that use's outcome.
        grant = self._grants.pop(form.get("code", ""), None)
        if grant is None or grant.expires_at <= self.clock():
            raise AuthorizationError("invalid_grant", "unknown, used or expired code")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise AuthorizationError("invalid_grant", "redirect_uri differs")
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        proof = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if not hmac.compare_digest(proof, grant.challenge):
            raise AuthorizationError("invalid_grant", "code_verifier does not match")
        token = issue_token(
            self.key,
            issuer=self.issuer,
            audience=self.audience,
            subject=self.person,
            scopes=self.scopes,
            ttl_s=TOKEN_TTL_S,
            extra_claims={"username": self.person, "client_id": self.client_id},
        )
        return {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_TTL_S}


def create_app(server: LocalAuthorizationServer) -> Starlette:
    """The server's HTTP face: ``/oauth2/authorize``, ``/oauth2/token``, ``/healthz``."""

    async def authorize(request: Request) -> Response:
        try:
            location = server.authorize(request.query_params)
        except AuthorizationError as exc:
            # Never redirected: the callback of a refused request is not trusted.
            return PlainTextResponse(f"{exc.error}: {exc}", status_code=400)
        return RedirectResponse(location, status_code=302, headers={"Cache-Control": "no-store"})

    async def token(request: Request) -> Response:
        # A form body (application/x-www-form-urlencoded), as OAuth 2.0 sends it.
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        try:
            body = server.token(form)
        except AuthorizationError as exc:
            return JSONResponse(
                {"error": exc.error, "error_description": str(exc)}, status_code=400
            )
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/oauth2/authorize", authorize, methods=["GET"]),
            Route("/oauth2/token", token, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def argument_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m cardstream.local.signin_server``."""
    parser = argparse.ArgumentParser(description=__doc__)
    # Loopback unless told otherwise: in a container (compose.yaml) it must listen beyond
    # the container's own loopback to be published, and is published on the host's only.
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--aws-endpoint-url", required=True, help="where the signing key is")
    parser.add_argument("--signing-key-secret", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--redirect-uri", required=True, help="the dashboard's callback URL")
    parser.add_argument("--person", required=True)
    parser.add_argument("--scope", action="append", required=True)
    return parser


def main(argv: list[str] | None = None) -> None:
    """``python -m cardstream.local.signin_server``: serve until stopped."""
    import uvicorn

    from cardstream.token_cmd import signing_key

    args = argument_parser().parse_args(argv)
    key = signing_key(
        {
            "aws_endpoint_url": args.aws_endpoint_url,
            "jwt": {"signing_key_secret": args.signing_key_secret},
        }
    )
    server = LocalAuthorizationServer(
        key=key,
        issuer=args.issuer,
        audience=args.audience,
        client_id=DASHBOARD_CLIENT_ID,
        redirect_uri=args.redirect_uri,
        person=args.person,
        scopes=tuple(args.scope),
    )
    uvicorn.run(create_app(server), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
