"""The bearer-token check of every authenticated route, as a FastAPI security dependency.

Verification, its cache and the refusal audit record are
:class:`cardstream_shared.bearer_auth.BearerAuthenticator`; then the token's client must be
a merchant of the registry or an operator (:mod:`ingest_api.merchants`). This module turns
a refusal into the service's problem document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.security import HTTPBearer

from cardstream_shared.bearer_auth import (
    BearerAuthenticator,
    RefusalError,
    bearer_token,
    token_in_url,
)
from cardstream_shared.jwt_auth import Principal
from cardstream_shared.merchant_registry import MerchantEntry
from ingest_api.merchants import RegistryUnavailableError
from ingest_api.problems import ProblemError

if TYPE_CHECKING:
    from ingest_api.runtime import Runtime


class BearerAuth(HTTPBearer):
    """FastAPI security dependency: the caller's :class:`Principal` holding ``scope``.

    Subclassing ``HTTPBearer`` puts the bearer scheme (and Swagger UI's Authorize button)
    in the OpenAPI document while the checks stay ours. The caller's registry entry (None
    for an operator) is left in ``request.state.merchant`` for the rate limit;
    ``merchants_only`` refuses operators.
    """

    def __init__(self, scope: str, *, merchants_only: bool = False) -> None:
        super().__init__(
            bearerFormat="JWT",
            description="An access token from the cardstream issuer (Cognito in AWS).",
            auto_error=False,
            scheme_name="BearerAuth",
        )
        self.required_scope = scope
        self.merchants_only = merchants_only

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        runtime = request.app.state.runtime
        authenticator: BearerAuthenticator = runtime.authenticator
        if token_in_url(request.query_params):
            # Refused before anything is read: the URL, with the token, is in the load
            # balancer's access log already; the client must learn to stop sending it.
            raise ProblemError(
                400,
                "token-in-url",
                "a bearer token is never taken from the URL; send it in the Authorization "
                "header only",
            )
        try:
            token = bearer_token(request.headers.get("authorization"))
            principal = await authenticator.principal(token, self.required_scope)
            request.state.merchant = await self._admit(runtime, principal)
        except RegistryUnavailableError:
            raise ProblemError(
                503,
                "merchant-registry-unavailable",
                "merchants cannot be recognized right now; retry later",
                headers={"Retry-After": str(runtime.settings.retry_after_s)},
            ) from None
        except RefusalError as refusal:
            authenticator.audit(request, refusal)
            raise ProblemError(
                refusal.status,
                "unauthorized" if refusal.status == 401 else "forbidden",
                refusal.detail,
                headers={"WWW-Authenticate": refusal.challenge},
            ) from None
        return principal

    async def _admit(self, runtime: Runtime, principal: Principal) -> MerchantEntry | None:
        """The caller's registry entry, None for an operator; :class:`RefusalError` (403)
        for any other client, and for an operator where only merchants may come;
        :class:`RegistryUnavailableError` while the registry was never read."""
        if principal.client_id in runtime.settings.operator_clients:
            if self.merchants_only:
                raise RefusalError(
                    403,
                    "operators do not post",
                    principal=principal,
                    detail="an operator's client may not post transactions",
                )
            return None
        merchant = await runtime.merchants.lookup(principal.client_id)
        if merchant is None:
            raise RefusalError(
                403,
                "client is not a registered merchant",
                principal=principal,
                detail="this client is not a registered merchant",
            )
        return merchant
