"""Amazon Cognito: one user pool for the merchants' machines and the operators (people).

- Each merchant of the configuration is its own app client (OAuth 2.0 client credentials,
  its own secret) with the merchant scopes, so every token names its merchant (the tenant).
- Each merchant has its entry in the merchant registry (SSM Parameter Store, under
  ``registry_path``, named by its client id): the ingest-api's list of merchants and each
  one's rate limit.
- Operators are users of the pool, created by an administrator, with MFA. They sign in to
  the dashboard through the pool's hosted UI (authorization code with PKCE) with the
  operator client, whose scopes also review alerts and read every tenant.

One pool, so the API and the dashboard trust one issuer and one resource server; people and
machines are told apart by app client (the token's ``client_id``) and scopes. Threat
protection (the Plus feature plan) covers the people's sign-ins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from cardstream_shared import merchant_registry
from cardstream_shared import resource_names as names
from cardstream_shared.merchant_registry import MerchantEntry

RESOURCE_SERVER_ID = "cardstream"
MERCHANT_SCOPES = (names.SCOPE_WRITE, names.SCOPE_READ)
OPERATOR_SCOPES = (names.SCOPE_READ, names.SCOPE_ALERTS_REVIEW, names.SCOPE_ALL_TENANTS)
_SCOPE_DESCRIPTIONS = {
    names.SCOPE_WRITE: "post transactions",
    names.SCOPE_READ: "read transactions and alerts",
    names.SCOPE_ALERTS_REVIEW: "review fraud alerts",
    names.SCOPE_ALL_TENANTS: "read every merchant's data (operators)",
}


@dataclass(frozen=True, kw_only=True)
class IdentityProps:
    """Props of :class:`Identity`.

    Attributes:
        domain_prefix: Cognito domain prefix (unique per region): the token endpoint and
            the hosted UI.
        region: the pool's region (part of the token issuer).
        merchants: one app client and registry entry each.
        registry_path: the merchant registry's parameter path.
        dashboard_url: the dashboard's address (sign-in callback and sign-out URLs).
        access_token_validity_minutes: lifetime of an access token.
        operator_session_hours: how long an operator stays signed in (refresh token).
    """

    domain_prefix: str
    region: str
    merchants: Sequence[MerchantEntry]
    registry_path: str
    dashboard_url: str
    access_token_validity_minutes: int = 60
    operator_session_hours: int = 8


class Identity(Construct):
    """User pool, resource server, a client and registry entry per merchant, the operators'
    client."""

    def __init__(self, scope: Construct, construct_id: str, *, props: IdentityProps) -> None:
        super().__init__(scope, construct_id)
        self.user_pool = cognito.UserPool(
            self,
            "UserPool",
            # Operators are created by an administrator; nobody signs up.
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(username=True, email=True),
            password_policy=cognito.PasswordPolicy(
                min_length=14,
                require_digits=True,
                require_lowercase=True,
                require_uppercase=True,
                require_symbols=True,
            ),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(sms=False, otp=True),
            # An administrator resets a lost password or device; no self-service recovery.
            account_recovery=cognito.AccountRecovery.NONE,
            feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.scopes = {
            name: cognito.ResourceServerScope(scope_name=name, scope_description=description)
            for name, description in _SCOPE_DESCRIPTIONS.items()
        }
        self.resource_server = self.user_pool.add_resource_server(
            "ResourceServer",
            identifier=RESOURCE_SERVER_ID,
            scopes=list(self.scopes.values()),
        )
        self.domain = self.user_pool.add_domain(
            "Domain", cognito_domain=cognito.CognitoDomainOptions(domain_prefix=props.domain_prefix)
        )
        access_token_validity = Duration.minutes(props.access_token_validity_minutes)
        self.merchant_clients: dict[str, cognito.UserPoolClient] = {}
        for merchant in props.merchants:
            construct_name = merchant.name.title().replace("-", "")
            client = self.user_pool.add_client(
                f"Merchant{construct_name}",
                user_pool_client_name=f"merchant-{merchant.name}",
                generate_secret=True,
                auth_flows=cognito.AuthFlow(),
                o_auth=cognito.OAuthSettings(
                    flows=cognito.OAuthFlows(client_credentials=True),
                    scopes=self._oauth_scopes(MERCHANT_SCOPES),
                ),
                access_token_validity=access_token_validity,
                prevent_user_existence_errors=True,
                enable_token_revocation=True,
            )
            self.merchant_clients[merchant.name] = client
            ssm.StringParameter(
                self,
                f"Registry{construct_name}",
                # The client id is known at deployment only, so it is not checked here.
                parameter_name=(
                    f"{merchant_registry.check_path(props.registry_path)}/"
                    f"{client.user_pool_client_id}"
                ),
                string_value=merchant.to_parameter_value(),
                # A path of several levels, whose client id is a token at synthesis.
                simple_name=False,
                description=f"merchant registry entry of {merchant.name}",
            )
        # A public client: the dashboard proves the code's origin with PKCE, so no client
        # secret has to be copied out of Cognito into the dashboard's configuration.
        self.operator_client = self.user_pool.add_client(
            "OperatorClient",
            user_pool_client_name="operators",
            generate_secret=False,
            auth_flows=cognito.AuthFlow(),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[
                    cognito.OAuthScope.OPENID,
                    cognito.OAuthScope.PROFILE,
                    *self._oauth_scopes(OPERATOR_SCOPES),
                ],
                callback_urls=[f"{props.dashboard_url}{names.SIGNIN_CALLBACK_PATH}"],
                logout_urls=[f"{props.dashboard_url}/"],
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            access_token_validity=access_token_validity,
            id_token_validity=access_token_validity,
            refresh_token_validity=Duration.hours(props.operator_session_hours),
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
        )
        for client in [*self.merchant_clients.values(), self.operator_client]:
            # Cognito allows password (SRP) and custom sign-in through its API when a client
            # names no flows; these clients get tokens only from the OAuth endpoints (hosted
            # UI, client credentials) and refresh them.
            resource = client.node.default_child
            if not isinstance(resource, cognito.CfnUserPoolClient):
                raise TypeError("a UserPoolClient's default child is its CfnUserPoolClient")
            resource.add_property_override("ExplicitAuthFlows", ["ALLOW_REFRESH_TOKEN_AUTH"])
        # The token's `iss`. The pool's ProviderURL attribute lacks the https:// scheme, so
        # the issuer is spelled out the way Cognito writes it into tokens.
        self.issuer = (
            f"https://cognito-idp.{props.region}.amazonaws.com/{self.user_pool.user_pool_id}"
        )
        # Cognito's published keys; the deploy workflow mirrors them for the tasks.
        self.jwks_url = f"{self.issuer}/.well-known/jwks.json"
        # Cognito prefixes every scope in an access token with the resource server id.
        self.scope_prefix = f"{RESOURCE_SERVER_ID}/"
        self.hosted_ui_url = self.domain.base_url()

    def _oauth_scopes(self, scope_names: Sequence[str]) -> list[cognito.OAuthScope]:
        return [
            cognito.OAuthScope.resource_server(self.resource_server, self.scopes[name])
            for name in scope_names
        ]

    @property
    def client_ids(self) -> list[str]:
        """Every app client whose tokens the ingest-api accepts: merchants and operators."""
        return [
            *(client.user_pool_client_id for client in self.merchant_clients.values()),
            self.operator_client.user_pool_client_id,
        ]

    def scoped(self, scope_name: str) -> str:
        """The scope string as it appears in a Cognito access token."""
        return f"{self.scope_prefix}{scope_name}"
