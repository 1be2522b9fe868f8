"""Services stack: internal ALB and the four Fargate services with their scaling policies,
and the private API that relays the dashboard's sign-in to Cognito."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Fn, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecs as ecs
from constructs import Construct

from cardstream_infra.components import permissions
from cardstream_infra.components.fargate_service import (
    FargateWorkload,
    FargateWorkloadProps,
    LoadBalancedTarget,
    ServicePlacement,
)
from cardstream_infra.components.fargate_task import TaskLogging
from cardstream_infra.components.ingress import InternalLoadBalancer, InternalLoadBalancerProps
from cardstream_infra.components.token_relay import TokenRelay, TokenRelayProps
from cardstream_infra.components.web_firewall import WebFirewall, WebFirewallProps
from cardstream_infra.config import DeploymentConfig
from cardstream_infra.service_ports import (
    API_PORT,
    DASHBOARD_PORT,
    LOADER_HEALTH_PORT,
    WRITER_HEALTH_PORT,
)
from cardstream_infra.stacks.data_stack import DataStack
from cardstream_infra.stacks.network_stack import NetworkStack
from cardstream_shared import resource_names as names

INGEST_CPU_TARGET = 60
# ALBRequestCountPerTarget counts a minute's requests. The target is the single-record
# requests a task serves in a minute at INGEST_CPU_TARGET, from the ingest benchmark's
# single-record requests per CPU-second (docs/deploy.md shows the arithmetic; a test holds
# it to bench/figures.toml): single-record traffic scales out where the CPU target would,
# before the CPU average has caught up; batches, a few hundred records a request, by CPU.
INGEST_REQUESTS_PER_TASK_PER_MINUTE = 214_000
# Iterator age (ms) of the stream-writer's scaling: caught up well within the flush age
# of 2 s plus a poll; behind by a minute; far behind by five.
WRITER_CAUGHT_UP_MS = 10_000
WRITER_BEHIND_MS = 60_000
WRITER_FAR_BEHIND_MS = 300_000
DASHBOARD_CPU_TARGET = 70


class ServicesStack(Stack):
    """Stateless compute; safe to redeploy on every image build."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        network_stack: NetworkStack,
        data: DataStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        net = network_stack.network
        region = config.region
        self.cluster = network_stack.cluster
        self.ingress = InternalLoadBalancer(
            self,
            "Ingress",
            props=InternalLoadBalancerProps(
                vpc=net.vpc,
                subnets=net.app_subnets,
                security_group=net.alb_sg,
                access_log_bucket=data.audit_logs.bucket,
                certificate_arn=config.certificate_arn,
                deletion_protection=config.environment == "prod",
            ),
        )
        # Behind the VPC link the ALB sees the link's addresses, not the callers': no rate
        # or reputation rule here (the API stage's firewall has them); the rules that read
        # requests still apply to both listeners.
        self.firewall = WebFirewall(
            self,
            "Firewall",
            props=WebFirewallProps(
                name=f"{config.prefix}-alb",
                max_body_bytes=config.max_body_bytes,
                requests_per_source_per_5_minutes=None,
                ip_reputation=False,
                api_gateway_body_inspection=False,
                # The dashboard's session travels in a cookie.
                redacted_headers=("authorization", "cookie"),
                log_key=network_stack.log_key,
                log_retention=network_stack.log_retention,
            ),
        )
        self.firewall.protect("Alb", self.ingress.alb.load_balancer_arn)
        # The dashboard's way to the user pool's token and revocation endpoints (operators'
        # sign-in); here, so that the dashboard can be given its address.
        self.token_relay = TokenRelay(
            self,
            "TokenRelay",
            props=TokenRelayProps(
                name=f"{config.prefix}-token-relay",
                cognito_domain_url=data.identity.hosted_ui_url,
                endpoint=net.execute_api_endpoint,
                log_key=network_stack.log_key,
                log_retention=network_stack.log_retention,
            ),
        )
        self.firewall.protect("RelayStage", self.token_relay.stage.stage_arn)
        CfnOutput(self, "TokenRelayUrl", value=self.token_relay.url)
        # The dashboard's name resolves to this, in the operators' DNS (docs/deploy.md).
        CfnOutput(self, "LoadBalancerDnsName", value=self.ingress.alb.load_balancer_dns_name)
        repos = data.registry.repositories
        secrets_key = data.secrets.key
        role_secrets = data.database.role_secrets
        identity = data.identity
        placement = ServicePlacement(
            cluster=self.cluster, subnets=net.app_subnets, name_prefix=config.prefix
        )
        logging = TaskLogging(key=network_stack.log_key, retention=network_stack.log_retention)

        def image(service: str) -> ecs.ContainerImage:
            # By digest: the image CI proved, whatever a tag may point at later.
            return ecs.ContainerImage.from_ecr_repository(
                repos[service], config.image_digests[service]
            )

        def base_env(prefix: str) -> dict[str, str]:
            # No service defaults its environment: outside local and test its settings fail
            # closed (https key set, verify-full database TLS, no placeholder secrets).
            return {
                f"{prefix}ENVIRONMENT": config.environment,
                f"{prefix}AWS_REGION": region,
                f"{prefix}LOG_LEVEL": "INFO",
            }

        def token_env(prefix: str, audience: str) -> dict[str, str]:
            # The same token settings for every verifying service (TokenVerifierSettings):
            # Cognito access tokens name the app client in client_id, not aud.
            return {
                f"{prefix}JWT_ISSUER": identity.issuer,
                f"{prefix}JWT_AUDIENCE": audience,
                f"{prefix}JWKS_URL": data.jwks.url,
                f"{prefix}JWT_AUDIENCE_CLAIM": "client_id",
                f"{prefix}JWT_SCOPE_PREFIX": identity.scope_prefix,
            }

        self.ingest = FargateWorkload(
            self,
            "IngestApi",
            props=FargateWorkloadProps(
                name="ingest-api",
                image=image("ingest-api"),
                placement=placement,
                logging=logging,
                health_port=API_PORT,
                serves_tls=True,
                target=LoadBalancedTarget(
                    listener=self.ingress.api_listener, deregistration_delay_s=30
                ),
                security_group=net.ingest_sg,
                environment={
                    **base_env("INGEST_"),
                    # Inside the task's own network namespace: the ALB must reach it.
                    "INGEST_HOST": "0.0.0.0",  # noqa: S104
                    "INGEST_PORT": str(API_PORT),
                    # The ALB forwards over HTTPS: the task makes its certificate at start.
                    "INGEST_TLS_SELF_SIGNED": "true",
                    # The web application firewall refuses the same sizes at the edge.
                    "INGEST_MAX_BODY_BYTES": str(config.max_body_bytes),
                    "INGEST_STREAM_NAME": config.scoped(names.STREAM_NAME),
                    "INGEST_PAN_KEY_SECRET_ID": data.secrets.pan_key.secret_arn,
                    # Merchants post and read; operators (the dashboard's client) read and
                    # review alerts. Each client's scopes bound what its tokens may do.
                    **token_env(
                        "INGEST_",
                        Fn.join(",", identity.client_ids),
                    ),
                    "INGEST_DATABASE_SECRET_ID": role_secrets[names.DB_API_ROLE].secret_arn,
                    "INGEST_DATABASE_SSLMODE": "verify-full",
                    # Merchants are the clients with a registry entry; operators, the
                    # operators' client.
                    "INGEST_MERCHANT_REGISTRY_PATH": config.merchant_registry_path,
                    "INGEST_OPERATOR_CLIENT_IDS": identity.operator_client.user_pool_client_id,
                },
                statements=[
                    *permissions.put_records(data.stream.stream, data.stream.key, region),
                    *permissions.read_merchant_registry(config.merchant_registry_path, region),
                    *permissions.read_secrets(
                        [data.secrets.pan_key, role_secrets[names.DB_API_ROLE]],
                        secrets_key,
                        region,
                    ),
                ],
                cpu=1024,
                memory_mib=2048,
                min_tasks=2,
                max_tasks=config.ingest_max_tasks,
                stop_timeout_s=30,
            ),
        )
        self.ingest.scaling.scale_on_cpu_utilization(
            "Cpu", target_utilization_percent=INGEST_CPU_TARGET
        )
        self.ingest.scale_on_requests(INGEST_REQUESTS_PER_TASK_PER_MINUTE)

        self.writer = FargateWorkload(
            self,
            "StreamWriter",
            props=FargateWorkloadProps(
                name="stream-writer",
                image=image("stream-writer"),
                placement=placement,
                logging=logging,
                health_port=WRITER_HEALTH_PORT,
                security_group=net.writer_sg,
                environment={
                    **base_env("WRITER_"),
                    "WRITER_STREAM_NAME": config.scoped(names.STREAM_NAME),
                    "WRITER_LEASE_TABLE": config.scoped(names.LEASE_TABLE),
                    "WRITER_BUCKET": config.landing_bucket_name,
                    "WRITER_HEALTH_PORT": str(WRITER_HEALTH_PORT),
                },
                statements=[
                    *permissions.consume_stream(data.stream.stream, data.stream.key, region),
                    *permissions.manage_leases(data.leases.table, data.leases.key, region),
                    *permissions.write_landed_objects(
                        config.landing_bucket_name, data.landing.bucket_key, region
                    ),
                ],
                min_tasks=1,
                # A worker beyond one per shard would hold no lease and do nothing.
                max_tasks=config.shard_count,
                # SIGTERM: flush, checkpoint and release leases before the kill.
                stop_timeout_s=90,
            ),
        )
        # The writer's lag is the stream's iterator age, not its CPU: more writers when the
        # oldest unread record ages, fewer once they keep up (up to one per shard).
        self.writer.scaling.scale_on_metric(
            "IteratorAge",
            metric=data.stream.stream.metric_get_records_iterator_age_milliseconds(
                statistic="Maximum", period=Duration.minutes(1)
            ),
            scaling_steps=[
                appscaling.ScalingInterval(upper=WRITER_CAUGHT_UP_MS, change=-1),
                appscaling.ScalingInterval(lower=WRITER_BEHIND_MS, change=+1),
                appscaling.ScalingInterval(lower=WRITER_FAR_BEHIND_MS, change=+3),
            ],
            adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            evaluation_periods=3,
            cooldown=Duration.minutes(3),
        )

        self.loader = FargateWorkload(
            self,
            "DbLoader",
            props=FargateWorkloadProps(
                name="db-loader",
                image=image("db-loader"),
                placement=placement,
                logging=logging,
                health_port=LOADER_HEALTH_PORT,
                security_group=net.loader_sg,
                environment={
                    **base_env("LOADER_"),
                    "LOADER_QUEUE_URL": data.landing.queue.queue_url,
                    "LOADER_DATABASE_SECRET_ID": role_secrets[names.DB_LOADER_ROLE].secret_arn,
                    "LOADER_DATABASE_SSLMODE": "verify-full",
                    "LOADER_HEALTH_PORT": str(LOADER_HEALTH_PORT),
                    # The same timeout the queue has; the loader extends it while it works.
                    "LOADER_VISIBILITY_TIMEOUT_S": str(data.landing.visibility_timeout_s),
                },
                statements=[
                    *permissions.consume_queue(data.landing.queue, data.landing.queue_key, region),
                    *permissions.read_landed_objects(
                        config.landing_bucket_name, data.landing.bucket_key, region
                    ),
                    *permissions.read_secrets(
                        [role_secrets[names.DB_LOADER_ROLE]], secrets_key, region
                    ),
                ],
                cpu=1024,
                memory_mib=2048,
                min_tasks=1,
                max_tasks=config.loader_max_tasks,
                stop_timeout_s=60,
            ),
        )
        # Backlog per task (the SQS scaling pattern AWS documents for worker fleets):
        # visible messages divided by the tasks running, tracked to a target.
        backlog_per_task = cloudwatch.MathExpression(
            expression="visible / IF(running > 0, running, 1)",
            using_metrics={
                "visible": data.landing.queue.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(1), statistic="Maximum"
                ),
                "running": cloudwatch.Metric(
                    namespace="ECS/ContainerInsights",
                    metric_name="RunningTaskCount",
                    dimensions_map={
                        "ClusterName": self.cluster.cluster_name,
                        "ServiceName": self.loader.service.service_name,
                    },
                    statistic="Average",
                    period=Duration.minutes(1),
                ),
            },
            label="landed objects waiting per db-loader task",
            period=Duration.minutes(1),
        )
        self.loader.scaling.scale_on_metric(
            "Backlog",
            metric=backlog_per_task,
            scaling_steps=[
                appscaling.ScalingInterval(upper=1, change=-1),
                appscaling.ScalingInterval(lower=config.loader_backlog_per_task, change=+1),
                appscaling.ScalingInterval(lower=config.loader_backlog_per_task * 5, change=+3),
            ],
            cooldown=Duration.minutes(2),
        )

        self.dashboard = FargateWorkload(
            self,
            "Dashboard",
            props=FargateWorkloadProps(
                name="dashboard",
                image=image("dashboard"),
                placement=placement,
                logging=logging,
                health_port=DASHBOARD_PORT,
                serves_tls=True,
                target=LoadBalancedTarget(
                    listener=self.ingress.dashboard_listener, deregistration_delay_s=15
                ),
                security_group=net.dashboard_sg,
                environment={
                    **base_env("DASHBOARD_"),
                    "DASHBOARD_HOST": "0.0.0.0",  # noqa: S104
                    "DASHBOARD_PORT": str(DASHBOARD_PORT),
                    "DASHBOARD_TLS_SELF_SIGNED": "true",
                    "DASHBOARD_DATABASE_SECRET_ID": role_secrets[
                        names.DB_DASHBOARD_ROLE
                    ].secret_arn,
                    "DASHBOARD_DATABASE_SSLMODE": "verify-full",
                    **token_env("DASHBOARD_", identity.operator_client.user_pool_client_id),
                    # Operators sign in at the hosted UI (authorization code with PKCE); the
                    # code is exchanged through the private token relay.
                    "DASHBOARD_PUBLIC_URL": config.dashboard_url,
                    "DASHBOARD_SIGNIN_AUTHORIZE_URL": f"{identity.hosted_ui_url}/oauth2/authorize",
                    "DASHBOARD_SIGNIN_TOKEN_URL": f"{self.token_relay.url}oauth2/token",
                    "DASHBOARD_SIGNIN_CLIENT_ID": identity.operator_client.user_pool_client_id,
                    # Signing out ends the hosted UI's session too; it sends the browser back
                    # to the dashboard's address (the operators' client's sign-out URL).
                    "DASHBOARD_SIGNOUT_URL": f"{identity.hosted_ui_url}/logout",
                    # The page shows every tenant's data: the operator scope too.
                    "DASHBOARD_SIGNIN_SCOPES": " ".join(
                        [
                            "openid",
                            identity.scoped(names.SCOPE_READ),
                            identity.scoped(names.SCOPE_ALL_TENANTS),
                        ]
                    ),
                    "DASHBOARD_QUEUE_URL": data.landing.queue.queue_url,
                    "DASHBOARD_DLQ_URL": data.landing.dlq.queue_url,
                    "DASHBOARD_STREAM_NAME": config.scoped(names.STREAM_NAME),
                    "DASHBOARD_BUCKET": config.landing_bucket_name,
                },
                statements=[
                    *permissions.read_secrets(
                        [role_secrets[names.DB_DASHBOARD_ROLE]], secrets_key, region
                    ),
                    *permissions.observe_pipeline(
                        queues=[data.landing.queue, data.landing.dlq],
                        stream=data.stream.stream,
                        bucket_name=config.landing_bucket_name,
                    ),
                ],
                min_tasks=1,
                max_tasks=2,
            ),
        )
        self.dashboard.scaling.scale_on_cpu_utilization(
            "Cpu", target_utilization_percent=DASHBOARD_CPU_TARGET
        )
        self.workloads = [self.ingest, self.writer, self.loader, self.dashboard]
        self.target_groups = {
            workload.name: workload.target_group
            for workload in self.workloads
            if workload.target_group is not None
        }
