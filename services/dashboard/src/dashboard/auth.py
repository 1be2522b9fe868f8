"""Who may look: an operator's token, from a header or a cookie.

The page shows every tenant's transactions and alerts, so a token needs the operator scope
``tenants:all`` besides ``transactions:read``; a merchant's token (its own tenant only) is
refused with 403 and sees nothing.

A browser cannot send a bearer header when it navigates, so the page reads the token from
the HttpOnly, SameSite=Strict session cookie that signing in leaves (``dashboard.signin``;
script on the page cannot read it, and no other site's request carries it); a token is
never read from a URL. The JSON endpoint takes the same cookie or an
``Authorization: Bearer`` header (for scripts). Verification, its cache and the refusal
audit record (who, what, when, outcome, origin; never the token) are
:class:`cardstream_shared.bearer_auth.BearerAuthenticator`.
"""

from __future__ import annotations

from typing import Final

from fastapi import Request

from cardstream_shared import resource_names as names
from cardstream_shared.bearer_auth import BearerAuthenticator, RefusalError, bearer_token
from cardstream_shared.jwt_auth import Principal

COOKIE_NAME: Final = "cardstream_dashboard"
REQUIRED_SCOPES: Final = (names.SCOPE_READ, names.SCOPE_ALL_TENANTS)


async def reader(
    authenticator: BearerAuthenticator, request: Request, *, allow_header: bool
) -> Principal:
    """The reader behind the request's bearer header (if allowed) or session cookie;
    :class:`RefusalError` unless the token is valid and holds :data:`REQUIRED_SCOPES`."""
    header = request.headers.get("authorization")
    if allow_header and header:
        token = bearer_token(header)
    else:
        token = request.cookies.get(COOKIE_NAME) or ""
        if not token:
            raise RefusalError(401, "no token")
    return await authenticator.principal(token, *REQUIRED_SCOPES)
