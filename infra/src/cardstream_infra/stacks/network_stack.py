"""Network stack: VPC, endpoints, security groups and the logs encryption key."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Fn, Stack
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from constructs import Construct

from cardstream_infra.components.jwks_mirror import JWKS_KEY
from cardstream_infra.components.network import (
    APP_SUBNETS,
    LogEncryptionKey,
    Network,
    NetworkProps,
)
from cardstream_infra.config import DeploymentConfig
from cardstream_infra.service_ports import API_PORT, DASHBOARD_PORT


class NetworkStack(Stack):
    """Everything the other stacks place their resources in, including the ECS cluster:
    the migration task (data stack) runs on it before the services stack exists."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.log_key = LogEncryptionKey(
            self, "LogKey", region=config.region, account=config.account
        ).key
        self.log_retention = retention_days(config.log_retention_days)
        self.network = Network(
            self,
            "Network",
            props=NetworkProps(
                api_port=API_PORT,
                dashboard_port=DASHBOARD_PORT,
                operator_cidrs=config.operator_cidrs,
                account=config.account,
                region=config.region,
                jwks_object=f"{config.jwks_bucket_name}/{JWKS_KEY}",
                log_key=self.log_key,
                log_retention=self.log_retention,
            ),
        )
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=self.network.vpc,
            cluster_name=config.prefix,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        # What infra/scripts/run-migration.sh needs to start the migration task.
        CfnOutput(self, "ClusterName", value=self.cluster.cluster_name)
        CfnOutput(
            self,
            "AppSubnetIds",
            value=Fn.join(
                ",", self.network.vpc.select_subnets(subnet_group_name=APP_SUBNETS).subnet_ids
            ),
        )
        CfnOutput(self, "MigrationSecurityGroupId", value=self.network.migrate_sg.security_group_id)

    @property
    def availability_zones(self) -> list[str]:
        """The region's first two zones, chosen by CloudFormation at deployment
        (``Fn::GetAZs``): synthesis never looks them up, so it needs no AWS credentials, and
        no zone name (which differs between accounts) is written into the template."""
        return [Fn.select(index, Fn.get_azs()) for index in range(2)]


# CloudWatch Logs accepts only these retention periods (jsii enums carry no day counts).
_RETENTIONS: tuple[tuple[int, logs.RetentionDays], ...] = (
    (7, logs.RetentionDays.ONE_WEEK),
    (14, logs.RetentionDays.TWO_WEEKS),
    (30, logs.RetentionDays.ONE_MONTH),
    (90, logs.RetentionDays.THREE_MONTHS),
    (180, logs.RetentionDays.SIX_MONTHS),
    (365, logs.RetentionDays.ONE_YEAR),
    (400, logs.RetentionDays.THIRTEEN_MONTHS),
    (731, logs.RetentionDays.TWO_YEARS),
    (1827, logs.RetentionDays.FIVE_YEARS),
    (3653, logs.RetentionDays.TEN_YEARS),
)


def retention_days(days: int) -> logs.RetentionDays:
    """The shortest allowed CloudWatch Logs retention of at least ``days`` days."""
    for allowed, retention in _RETENTIONS:
        if allowed >= days:
            return retention
    return _RETENTIONS[-1][1]
