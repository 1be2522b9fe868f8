"""The merchant API: an API Gateway REST API on a custom domain, every data route behind a
Cognito authorizer with the route's scope, AWS WAF on its stage, throttling and access logs,
reaching the internal ALB through a VPC link.

A REST API rather than an HTTP API because AWS WAF attaches only to REST API stages: the
firewall then sees each caller's own address (the rate limit per source means something)
and nothing reaches the stage around it. The execute-api endpoint is switched off, so the
custom domain is the API's only address.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from cardstream_infra.components.identity import Identity
from cardstream_infra.components.rest_api_logs import RestApiLogs
from cardstream_shared import resource_names as names

STAGE = "live"
# The one route whose body may hold more than one record.
BATCH_PATH = "/v1/transactions/batch"

# (method, path, scope) of every authorized route to the ingest-api.
API_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("POST", "/v1/transactions", names.SCOPE_WRITE),
    ("POST", BATCH_PATH, names.SCOPE_WRITE),
    ("GET", "/v1/transactions/{trans_num}", names.SCOPE_READ),
    ("GET", "/v1/alerts", names.SCOPE_READ),
    ("GET", "/v1/alerts/{alert_id}", names.SCOPE_READ),
    ("PATCH", "/v1/alerts/{alert_id}", names.SCOPE_ALERTS_REVIEW),
)
# Swagger UI, ReDoc, their static assets and the OpenAPI document: no data, and merchants
# need them to try the API.
DOC_ROUTES: tuple[str, ...] = ("/docs", "/redoc", "/openapi.json", "/static/{proxy+}")

# Refusals by the gateway itself (no route, no or a bad token, throttled, firewall, too
# large) in the same problem+json shape as the ingest-api's own.
_PROBLEM_TEMPLATE = (
    '{"type": "about:blank", "title": "$context.error.responseType",'
    ' "detail": $context.error.messageString}'
)


@dataclass(frozen=True, kw_only=True)
class PublicApiProps:
    """Props of :class:`PublicApi`.

    Attributes:
        name: API name (carries the environment).
        domain_name: the API's custom domain, e.g. ``api.cardstream.example.com``.
        certificate_arn: ACM certificate (this region) covering ``domain_name``.
        vpc: the VPC of the load balancer.
        subnets: subnets for the VPC link's network interfaces.
        vpc_link_security_group: security group of the VPC link.
        load_balancer: the internal ALB (its HTTPS listener on 443 serves the API).
        identity: the Cognito user pool.
        rate_limit: steady-state requests per second for the whole stage.
        burst_limit: burst capacity for the whole stage.
        log_key: KMS key of the log groups.
        log_retention: log retention.
    """

    name: str
    domain_name: str
    certificate_arn: str
    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    vpc_link_security_group: ec2.ISecurityGroup
    load_balancer: elbv2.IApplicationLoadBalancer
    identity: Identity
    rate_limit: int
    burst_limit: int
    log_key: kms.IKey
    log_retention: logs.RetentionDays


class PublicApi(Construct):
    """REST API whose data routes all require a Cognito token with the right scope."""

    def __init__(self, scope: Construct, construct_id: str, *, props: PublicApiProps) -> None:
        super().__init__(scope, construct_id)
        # A VPC link V2 reaches an ALB directly (V1 links need a Network Load Balancer).
        self.vpc_link = apigwv2.VpcLink(
            self,
            "VpcLink",
            vpc=props.vpc,
            subnets=props.subnets,
            security_groups=[props.vpc_link_security_group],
        )
        self.logs = RestApiLogs(self, "Logs", key=props.log_key, retention=props.log_retention)
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=props.name,
            description="cardstream merchant API",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            disable_execute_api_endpoint=True,
            # Execution logs use the account's API Gateway logging role, which the token
            # relay's API (services stack, deployed before this one) sets.
            cloud_watch_role=False,
            deploy_options=self.logs.stage_options(
                stage_name=STAGE, rate_limit=props.rate_limit, burst_limit=props.burst_limit
            ),
        )
        self.stage = self.api.deployment_stage
        self.execution_logs = self.logs.add_execution_logs(self.api, STAGE)
        self.domain = self.api.add_domain_name(
            "Domain",
            domain_name=props.domain_name,
            certificate=acm.Certificate.from_certificate_arn(
                self, "Certificate", props.certificate_arn
            ),
            endpoint_type=apigw.EndpointType.REGIONAL,
            security_policy=apigw.SecurityPolicy.TLS_1_2,
        )
        for response_type in (apigw.ResponseType.DEFAULT_4_XX, apigw.ResponseType.DEFAULT_5_XX):
            self.api.add_gateway_response(
                response_type.response_type,
                type=response_type,
                response_headers={"Content-Type": "'application/problem+json'"},
                templates={"application/json": _PROBLEM_TEMPLATE},
            )
        # REST APIs answer an unknown route or method with 403 "Missing Authentication
        # Token"; the ingest-api would say 404.
        self.api.add_gateway_response(
            "NotFound",
            type=apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN,
            status_code="404",
            response_headers={"Content-Type": "'application/problem+json'"},
            templates={
                "application/json": '{"type": "about:blank", "title": "Not Found",'
                ' "status": 404, "detail": "No such route."}'
            },
        )
        self.authorizer = apigw.CognitoUserPoolsAuthorizer(
            self, "Cognito", cognito_user_pools=[props.identity.user_pool]
        )
        self.validator = self.api.add_request_validator(
            "PathParameters", validate_request_parameters=True
        )
        self.methods: dict[tuple[str, str], apigw.Method] = {}
        for method, path, scope_name in API_ROUTES:
            self._route(
                method,
                path,
                props,
                authorization_type=apigw.AuthorizationType.COGNITO,
                authorizer=self.authorizer,
                authorization_scopes=[props.identity.scoped(scope_name)],
            )
        for path in DOC_ROUTES:
            self._route("GET", path, props, authorization_type=apigw.AuthorizationType.NONE)
        self.url = f"https://{props.domain_name}"

    def _route(
        self,
        method: str,
        path: str,
        props: PublicApiProps,
        *,
        authorization_type: apigw.AuthorizationType,
        authorizer: apigw.IAuthorizer | None = None,
        authorization_scopes: list[str] | None = None,
    ) -> None:
        resource = self.api.root.resource_for_path(path)
        parameters = [part.strip("{}+") for part in path.split("/") if part.startswith("{")]
        backend_path = path.replace("+}", "}")
        # A VPC link V2 to an ALB is given as the load balancer's ARN (IntegrationTarget);
        # the URI's host is the Host header and the name API Gateway verifies the ALB's
        # certificate against (HTTPS on port 443, the API listener).
        integration = apigw.Integration(
            type=apigw.IntegrationType.HTTP_PROXY,
            integration_http_method=method,
            uri=f"https://{props.domain_name}{backend_path}",
            options=apigw.IntegrationOptions(
                request_parameters={
                    f"integration.request.path.{name}": f"method.request.path.{name}"
                    for name in parameters
                },
            ),
        )
        added = resource.add_method(
            method,
            integration,
            authorization_type=authorization_type,
            authorizer=authorizer,
            authorization_scopes=authorization_scopes,
            request_validator=self.validator,
            request_parameters={f"method.request.path.{name}": True for name in parameters},
        )
        cfn = added.node.default_child
        if not isinstance(cfn, apigw.CfnMethod):
            raise TypeError("a Method's default child is its CfnMethod")
        cfn.add_property_override("Integration.ConnectionType", "VPC_LINK")
        cfn.add_property_override("Integration.ConnectionId", self.vpc_link.vpc_link_id)
        cfn.add_property_override(
            "Integration.IntegrationTarget", props.load_balancer.load_balancer_arn
        )
        self.methods[(method, path)] = added
