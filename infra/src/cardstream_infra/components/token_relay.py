"""The dashboard's way to Cognito's OAuth endpoints: a private REST API that relays them.

An operator signs in through the user pool's hosted UI; the dashboard then exchanges the
authorization code (with its PKCE verifier) at the pool's token endpoint, and revokes the
refresh token at sign-out. The tasks have no internet route, and Cognito does not serve a
pool's domain through PrivateLink (Cognito developer guide, "Access Amazon Cognito using an
interface endpoint"). This API is reachable only through the VPC's execute-api endpoint and
forwards exactly those two endpoints of the pool's domain, so no NAT gateway or internet
route is added for one sign-in call. It belongs to the services stack, beside the dashboard
that is given its address.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from cardstream_infra.components.rest_api_logs import RestApiLogs

STAGE = "relay"
# The OAuth 2.0 endpoints of a Cognito domain the dashboard calls from its server.
RELAYED_PATHS = ("/oauth2/token", "/oauth2/revoke")
# A sign-in is one call; this is plenty for a team of operators and bounds abuse.
RATE_PER_SECOND = 10
BURST = 20


@dataclass(frozen=True, kw_only=True)
class TokenRelayProps:
    """Props of :class:`TokenRelay`.

    Attributes:
        name: API name (carries the environment).
        cognito_domain_url: ``https://<prefix>.auth.<region>.amazoncognito.com``.
        endpoint: the VPC's execute-api interface endpoint, the only way in.
        log_key: KMS key of the log groups.
        log_retention: log retention.
    """

    name: str
    cognito_domain_url: str
    endpoint: ec2.IInterfaceVpcEndpoint
    log_key: kms.IKey
    log_retention: logs.RetentionDays


class TokenRelay(Construct):
    """Private REST API: ``POST /oauth2/token`` and ``POST /oauth2/revoke``, proxied."""

    def __init__(self, scope: Construct, construct_id: str, *, props: TokenRelayProps) -> None:
        super().__init__(scope, construct_id)
        self.logs = RestApiLogs(self, "Logs", key=props.log_key, retention=props.log_retention)
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=props.name,
            description="cardstream dashboard sign-in: Cognito's token endpoints, from the VPC",
            endpoint_configuration=apigw.EndpointConfiguration(
                types=[apigw.EndpointType.PRIVATE], vpc_endpoints=[props.endpoint]
            ),
            policy=iam.PolicyDocument(
                statements=[
                    iam.PolicyStatement(
                        sid="FromTheVpcEndpointOnly",
                        principals=[iam.AnyPrincipal()],
                        actions=["execute-api:Invoke"],
                        resources=["execute-api:/*"],
                        conditions={
                            "StringEquals": {"aws:SourceVpce": props.endpoint.vpc_endpoint_id}
                        },
                    )
                ]
            ),
            # Execution logs need the account's API Gateway logging role. This API is set up
            # first (services stack, before the api stack), so it sets the role; kept on
            # stack deletion because the merchant API and other APIs of the account use it.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=self.logs.stage_options(
                stage_name=STAGE, rate_limit=RATE_PER_SECOND, burst_limit=BURST
            ),
        )
        self.stage = self.api.deployment_stage
        self.execution_logs = self.logs.add_execution_logs(self.api, STAGE)
        self.methods: list[apigw.Method] = []
        for path in RELAYED_PATHS:
            self.methods.append(
                self.api.root.resource_for_path(path).add_method(
                    "POST",
                    apigw.HttpIntegration(
                        f"{props.cognito_domain_url}{path}", http_method="POST", proxy=True
                    ),
                    # Cognito authenticates the caller itself: the code and its PKCE
                    # verifier, or the refresh token being revoked.
                    authorization_type=apigw.AuthorizationType.NONE,
                )
            )
        # What the dashboard's settings name: with private DNS on the endpoint, the API's
        # own host name resolves to it inside the VPC.
        self.url = self.api.url_for_path()
