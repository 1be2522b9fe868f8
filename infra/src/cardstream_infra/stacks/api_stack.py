"""API stack: the public REST API in front of the internal ALB, behind AWS WAF."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from cardstream_infra.components.public_api import BATCH_PATH, PublicApi, PublicApiProps
from cardstream_infra.components.web_firewall import WebFirewall, WebFirewallProps
from cardstream_infra.config import DeploymentConfig
from cardstream_infra.stacks.data_stack import DataStack
from cardstream_infra.stacks.network_stack import NetworkStack
from cardstream_infra.stacks.services_stack import ServicesStack
from cardstream_shared.transaction_input import MAX_RECORD_BYTES


class ApiStack(Stack):
    """API Gateway REST API, VPC link, Cognito authorizer, throttling, access logs, WAF."""

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
                name=f"{config.prefix}-api",
                domain_name=config.api_domain_name,
                certificate_arn=config.certificate_arn,
                vpc=net.vpc,
                subnets=net.app_subnets,
                vpc_link_security_group=net.vpc_link_sg,
                load_balancer=services.ingress.alb,
                identity=data.identity,
                rate_limit=config.api_rate_limit,
                burst_limit=config.api_burst_limit,
                log_key=network_stack.log_key,
                log_retention=network_stack.log_retention,
            ),
        )
        # At the stage, the firewall sees each caller's own address.
        self.firewall = WebFirewall(
            self,
            "Firewall",
            props=WebFirewallProps(
                name=f"{config.prefix}-api",
                max_body_bytes=config.max_body_bytes,
                requests_per_source_per_5_minutes=config.waf_requests_per_source_per_5_minutes,
                ip_reputation=True,
                api_gateway_body_inspection=True,
                # The ingest-api's own limits: one record on every route but the batch one.
                max_record_bytes=MAX_RECORD_BYTES,
                batch_paths=(BATCH_PATH,),
                redacted_headers=("authorization",),
                log_key=network_stack.log_key,
                log_retention=network_stack.log_retention,
            ),
        )
        self.firewall.protect("Stage", self.public_api.stage.stage_arn)
        CfnOutput(self, "ApiUrl", value=self.public_api.url)
        # The DNS name to point the API's domain at (CNAME, or a Route 53 alias).
        CfnOutput(
            self, "ApiDomainTarget", value=self.public_api.domain.domain_name_alias_domain_name
        )
