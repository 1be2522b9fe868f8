"""Public HTTP API: API Gateway with a Cognito JWT authorizer, throttling and access logs,
reaching the internal ALB through a VPC link."""

from __future__ import annotations

from dataclasses import dataclass

import jsii
from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from cardstream_infra.components.identity import MerchantIdentity
from cardstream_shared import resource_names as names

# (method, path, scope) of every authorized route to the ingest-api.
API_ROUTES: tuple[tuple[apigwv2.HttpMethod, str, str], ...] = (
    (apigwv2.HttpMethod.POST, "/v1/transactions", names.SCOPE_WRITE),
    (apigwv2.HttpMethod.POST, "/v1/transactions/batch", names.SCOPE_WRITE),
    (apigwv2.HttpMethod.PATCH, "/v1/alerts/{alert_id}", names.SCOPE_ALERTS_REVIEW),
    (apigwv2.HttpMethod.GET, "/v1/{proxy+}", names.SCOPE_READ),
)
# Swagger UI, ReDoc, their static assets and the OpenAPI document: no data, and merchants
# need them to try the API.
DOC_ROUTES: tuple[str, ...] = ("/docs", "/redoc", "/openapi.json", "/static/{proxy+}")
# The dashboard page and its assets use absolute paths (/, /static, /api/dashboard), so it
# gets an HTTP API of its own rather than a path prefix on the merchant API.
DASHBOARD_ROUTES: tuple[str, ...] = ("/", "/{proxy+}")


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    """Access-log settings; an interface in jsii, so Python passes an implementing class."""

    def __init__(
        self, destination: apigwv2.IAccessLogDestination, log_format: apigw.AccessLogFormat
    ) -> None:
        self._destination = destination
        self._format = log_format

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        """Where access logs go."""
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        """One JSON object per request."""
        return self._format


@dataclass(frozen=True, kw_only=True)
class PublicApiProps:
    """Props of :class:`PublicApi`.

    Attributes:
        vpc: the VPC of the load balancer.
        subnets: subnets for the VPC link's network interfaces.
        vpc_link_security_group: security group of the VPC link.
        api_listener: ALB listener of the ingest-api.
        dashboard_listener: ALB listener of the dashboard.
        identity: the Cognito user pool and merchant client.
        rate_limit: steady-state requests per second for the whole stage.
        burst_limit: burst capacity for the whole stage.
        log_key: KMS key of the access-log group.
        log_retention: access-log retention.
    """

    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    vpc_link_security_group: ec2.ISecurityGroup
    api_listener: elbv2.IApplicationListener
    dashboard_listener: elbv2.IApplicationListener
    identity: MerchantIdentity
    rate_limit: int
    burst_limit: int
    log_key: kms.IKey
    log_retention: logs.RetentionDays


class PublicApi(Construct):
    """HTTP API whose data routes all require a Cognito token with the right scope."""

    def __init__(self, scope: Construct, construct_id: str, *, props: PublicApiProps) -> None:
        super().__init__(scope, construct_id)
        self.vpc_link = apigwv2.VpcLink(
            self,
            "VpcLink",
            vpc=props.vpc,
            subnets=props.subnets,
            security_groups=[props.vpc_link_security_group],
        )
        self.authorizer = authorizers.HttpUserPoolAuthorizer(
            "Cognito",
            props.identity.user_pool,
            # Operators review alerts through PATCH /v1/alerts/{id} with their own client.
            user_pool_clients=[props.identity.merchant_client, props.identity.operator_client],
        )
        self.api, self.stage, self.access_logs = _throttled_api(
            self, "Api", "cardstream merchant API", props
        )
        self.dashboard_api, self.dashboard_stage, _ = _throttled_api(
            self, "DashboardApi", "cardstream monitoring dashboard", props
        )
        api_integration = integrations.HttpAlbIntegration(
            "IngestApi", props.api_listener, vpc_link=self.vpc_link
        )
        for method, path, scope_name in API_ROUTES:
            self.api.add_routes(
                path=path,
                methods=[method],
                integration=api_integration,
                authorizer=self.authorizer,
                authorization_scopes=[props.identity.scoped(scope_name)],
            )
        self.doc_routes: list[apigwv2.HttpRoute] = []
        for path in DOC_ROUTES:
            self.doc_routes += self.api.add_routes(
                path=path,
                methods=[apigwv2.HttpMethod.GET],
                integration=api_integration,
                authorizer=apigwv2.HttpNoneAuthorizer(),
            )
        # The dashboard verifies the operator's Cognito token itself: a browser opens it with
        # ?token=..., and it keeps the token in an HttpOnly cookie, which API Gateway's JWT
        # authorizer (Authorization header only) cannot read.
        dashboard_integration = integrations.HttpAlbIntegration(
            "Dashboard", props.dashboard_listener, vpc_link=self.vpc_link
        )
        self.dashboard_routes: list[apigwv2.HttpRoute] = []
        for path in DASHBOARD_ROUTES:
            self.dashboard_routes += self.dashboard_api.add_routes(
                path=path,
                methods=[apigwv2.HttpMethod.GET],
                integration=dashboard_integration,
                authorizer=apigwv2.HttpNoneAuthorizer(),
            )
        self.url = self.stage.url
        self.dashboard_url = self.dashboard_stage.url


def _throttled_api(
    scope: Construct, construct_id: str, description: str, props: PublicApiProps
) -> tuple[apigwv2.HttpApi, apigwv2.HttpStage, logs.LogGroup]:
    """An HTTP API whose only stage is throttled and writes JSON access logs."""
    api = apigwv2.HttpApi(
        scope,
        construct_id,
        api_name=f"cardstream-{construct_id.lower()}",
        description=description,
        create_default_stage=False,
    )
    access_logs = logs.LogGroup(
        scope,
        f"{construct_id}AccessLogs",
        encryption_key=props.log_key,
        retention=props.log_retention,
        removal_policy=RemovalPolicy.RETAIN,
    )
    stage = apigwv2.HttpStage(
        scope,
        f"{construct_id}Stage",
        http_api=api,
        stage_name="$default",
        auto_deploy=True,
        throttle=apigwv2.ThrottleSettings(
            rate_limit=props.rate_limit, burst_limit=props.burst_limit
        ),
        access_log_settings=_AccessLogSettings(
            apigwv2.LogGroupLogDestination(access_logs),
            # Caller identity and outcome for the audit trail; never headers or bodies.
            apigw.AccessLogFormat.json_with_standard_fields(
                caller=True,
                http_method=True,
                ip=True,
                protocol=True,
                request_time=True,
                resource_path=True,
                response_length=True,
                status=True,
                user=True,
            ),
        ),
    )
    return api, stage, access_logs
