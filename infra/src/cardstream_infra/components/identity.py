"""Amazon Cognito user pool issuing merchant tokens with the cardstream scopes."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from cardstream_shared import resource_names as names

RESOURCE_SERVER_ID = "cardstream"


@dataclass(frozen=True, kw_only=True)
class MerchantIdentityProps:
    """Props of :class:`MerchantIdentity`.

    Attributes:
        domain_prefix: Cognito domain prefix (unique per region) for the token endpoint.
        region: the pool's region (part of the token issuer).
        access_token_validity_minutes: lifetime of a client-credentials access token.
    """

    domain_prefix: str
    region: str
    access_token_validity_minutes: int = 60


class MerchantIdentity(Construct):
    """User pool, resource server with three scopes, client-credentials merchant client."""

    def __init__(
        self, scope: Construct, construct_id: str, *, props: MerchantIdentityProps
    ) -> None:
        super().__init__(scope, construct_id)
        self.user_pool = cognito.UserPool(
            self,
            "UserPool",
            # Machine clients only: nobody signs up, and there are no human passwords.
            self_sign_up_enabled=False,
            password_policy=cognito.PasswordPolicy(
                min_length=14,
                require_digits=True,
                require_lowercase=True,
                require_uppercase=True,
                require_symbols=True,
            ),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(sms=False, otp=True),
            account_recovery=cognito.AccountRecovery.NONE,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.write_scope = cognito.ResourceServerScope(
            scope_name=names.SCOPE_WRITE, scope_description="post transactions"
        )
        self.read_scope = cognito.ResourceServerScope(
            scope_name=names.SCOPE_READ, scope_description="read transactions"
        )
        self.review_scope = cognito.ResourceServerScope(
            scope_name=names.SCOPE_ALERTS_REVIEW, scope_description="review fraud alerts"
        )
        self.resource_server = self.user_pool.add_resource_server(
            "ResourceServer",
            identifier=RESOURCE_SERVER_ID,
            scopes=[self.write_scope, self.read_scope, self.review_scope],
        )
        self.domain = self.user_pool.add_domain(
            "Domain", cognito_domain=cognito.CognitoDomainOptions(domain_prefix=props.domain_prefix)
        )
        self.merchant_client = self.user_pool.add_client(
            "MerchantClient",
            generate_secret=True,
            auth_flows=cognito.AuthFlow(),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(client_credentials=True),
                scopes=[
                    cognito.OAuthScope.resource_server(self.resource_server, self.write_scope),
                    cognito.OAuthScope.resource_server(self.resource_server, self.read_scope),
                ],
            ),
            access_token_validity=Duration.minutes(props.access_token_validity_minutes),
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
        )
        # Analysts and fraud reviewers: the dashboard's audience (read + alerts:review).
        self.operator_client = self.user_pool.add_client(
            "OperatorClient",
            generate_secret=True,
            auth_flows=cognito.AuthFlow(),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(client_credentials=True),
                scopes=[
                    cognito.OAuthScope.resource_server(self.resource_server, self.read_scope),
                    cognito.OAuthScope.resource_server(self.resource_server, self.review_scope),
                ],
            ),
            access_token_validity=Duration.minutes(props.access_token_validity_minutes),
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
        )
        # The token's `iss`. The pool's ProviderURL attribute lacks the https:// scheme, so
        # the issuer is spelled out the way Cognito writes it into tokens.
        self.issuer = (
            f"https://cognito-idp.{props.region}.amazonaws.com/{self.user_pool.user_pool_id}"
        )
        # Cognito's published keys; the deploy workflow mirrors them for the tasks.
        self.jwks_url = f"{self.issuer}/.well-known/jwks.json"
        # Cognito prefixes every scope in an access token with the resource server id.
        self.scope_prefix = f"{RESOURCE_SERVER_ID}/"

    def scoped(self, scope_name: str) -> str:
        """The scope string as it appears in a Cognito access token."""
        return f"{self.scope_prefix}{scope_name}"
