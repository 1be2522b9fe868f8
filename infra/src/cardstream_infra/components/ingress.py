"""The internal Application Load Balancer: the API Gateway VPC link forwards merchants'
requests to one HTTPS listener, operators on the bank's network reach the dashboard on
another. Nothing reaches it from the internet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cardstream_infra.service_ports import API_LISTENER_PORT, DASHBOARD_LISTENER_PORT

# Paths the load balancer answers itself (404) instead of forwarding them to a task.
UNROUTED_PATHS: Final = ("/metrics", "/metrics/*")


@dataclass(frozen=True, kw_only=True)
class InternalLoadBalancerProps:
    """Props of :class:`InternalLoadBalancer`.

    Attributes:
        vpc: the VPC.
        subnets: subnets of the load balancer (isolated: it has no internet face).
        security_group: its security group (rules set by the network).
        access_log_bucket: the audit-log bucket (SSE-S3, Object Lock) receiving its access logs.
        certificate_arn: ACM certificate of both listeners (the API's and the dashboard's
            domain names).
        deletion_protection: refuse to delete the load balancer (production).
    """

    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    security_group: ec2.ISecurityGroup
    access_log_bucket: s3.IBucket
    certificate_arn: str
    deletion_protection: bool


class InternalLoadBalancer(Construct):
    """Internal ALB with one listener for the ingest-api and one for the dashboard."""

    def __init__(
        self, scope: Construct, construct_id: str, *, props: InternalLoadBalancerProps
    ) -> None:
        super().__init__(scope, construct_id)
        self.alb = elbv2.ApplicationLoadBalancer(
            self,
            "Alb",
            vpc=props.vpc,
            vpc_subnets=props.subnets,
            internet_facing=False,
            security_group=props.security_group,
            drop_invalid_header_fields=True,
            deletion_protection=props.deletion_protection,
            idle_timeout=Duration.seconds(60),
        )
        self.alb.log_access_logs(props.access_log_bucket, prefix="alb")
        certificate = elbv2.ListenerCertificate.from_arn(props.certificate_arn)
        # TLS 1.3, or TLS 1.2 with forward-secret AES-GCM suites only.
        ssl_policy = elbv2.SslPolicy.TLS13_RES
        self.api_listener = self.alb.add_listener(
            "Api",
            port=API_LISTENER_PORT,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[certificate],
            ssl_policy=ssl_policy,
            open=False,
        )
        self.dashboard_listener = self.alb.add_listener(
            "Dashboard",
            port=DASHBOARD_LISTENER_PORT,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[certificate],
            ssl_policy=ssl_policy,
            open=False,
        )
        # The services' Prometheus counters need no token inside the VPC; nothing in AWS
        # scrapes them through the load balancer, so neither listener forwards /metrics.
        for listener in (self.api_listener, self.dashboard_listener):
            listener.add_action(
                "NoMetrics",
                priority=1,
                conditions=[elbv2.ListenerCondition.path_patterns(list(UNROUTED_PATHS))],
                action=elbv2.ListenerAction.fixed_response(
                    404,
                    content_type="application/problem+json",
                    message_body='{"type":"about:blank","title":"Not Found","status":404}',
                ),
            )
