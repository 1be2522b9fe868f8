"""API stack: the public HTTP API in front of the internal ALB."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from cardstream_infra.components.http_api import PublicApi, PublicApiProps
from cardstream_infra.config import DeploymentConfig
from cardstream_infra.stacks.data_stack import DataStack
from cardstream_infra.stacks.network_stack import NetworkStack
from cardstream_infra.stacks.services_stack import ServicesStack


class ApiStack(Stack):
    """API Gateway HTTP API, VPC link, Cognito JWT authorizer, throttling, access logs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        network_stack: NetworkStack,
        data: DataStack,
        services: ServicesStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        net = network_stack.network
        self.public_api = PublicApi(
            self,
            "PublicApi",
            props=PublicApiProps(
                vpc=net.vpc,
                subnets=net.app_subnets,
                vpc_link_security_group=net.vpc_link_sg,
                api_listener=services.ingress.api_listener,
                dashboard_listener=services.ingress.dashboard_listener,
                identity=data.identity,
                rate_limit=config.api_rate_limit,
                burst_limit=config.api_burst_limit,
                log_key=network_stack.log_key,
                log_retention=network_stack.log_retention,
            ),
        )
        CfnOutput(self, "ApiUrl", value=self.public_api.api.api_endpoint)
        CfnOutput(self, "DashboardUrl", value=self.public_api.dashboard_api.api_endpoint)
