"""The bearer-token check of every authenticated route, as a FastAPI security dependency.

Verification, its cache and the refusal audit record are
:class:`cardstream_shared.bearer_auth.BearerAuthenticator`; this module turns a refusal
into the service's problem document.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.security import HTTPBearer

from cardstream_shared.bearer_auth import BearerAuthenticator, RefusalError, bearer_token
from cardstream_shared.jwt_auth import Principal
from ingest_api.problems import ProblemError


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
        authenticator: BearerAuthenticator = request.app.state.runtime.authenticator
        try:
            token = bearer_token(request.headers.get("authorization"))
            return await authenticator.principal(token, self.required_scope)
        except RefusalError as refusal:
            authenticator.audit(request, refusal)
            raise ProblemError(
                refusal.status,
                "unauthorized" if refusal.status == 401 else "forbidden",
                refusal.detail,
                headers={"WWW-Authenticate": refusal.challenge},
            ) from None
