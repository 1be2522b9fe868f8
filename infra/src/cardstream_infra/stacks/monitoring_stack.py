"""Monitoring stack: alarms on the database, stream, dead letters, API and loader."""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from cardstream_infra.components.alarms import PipelineAlarms, PipelineAlarmsProps
from cardstream_infra.config import DeploymentConfig
from cardstream_infra.stacks.api_stack import ApiStack
from cardstream_infra.stacks.data_stack import DataStack
from cardstream_infra.stacks.services_stack import ServicesStack


class MonitoringStack(Stack):
    """CloudWatch alarms notifying an encrypted SNS topic."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        data: DataStack,
        services: ServicesStack,
        api: ApiStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        topic_key = kms.Key(
            self,
            "TopicKey",
            description="cardstream alarm topic encryption",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # CloudWatch publishes alarm notifications to the encrypted topic itself: only for
        # alarms of this account and region (no confused deputy).
        topic_key.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                resources=["*"],
                conditions={
                    "StringEquals": {"aws:SourceAccount": self.account},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{self.partition}:cloudwatch:{self.region}:"
                        f"{self.account}:alarm:*"
                    },
                },
            )
        )
        self.alarms = PipelineAlarms(
            self,
            "Alarms",
            props=PipelineAlarmsProps(
                name=f"{config.prefix}-pipeline",
                database=data.database.instance,
                allocated_storage_gib=config.db_allocated_storage_gib,
                max_connections=config.db_max_connections,
                stream=data.stream.stream,
                queue=data.landing.queue,
                dead_letter_queue=data.landing.dlq,
                api_name=api.public_api.api.rest_api_name,
                api_stage=api.public_api.stage.stage_name,
                load_balancer=services.ingress.alb,
                target_groups=services.target_groups,
                cluster_name=services.cluster.cluster_name,
                services={workload.name: workload.service for workload in services.workloads},
                web_acl_names={
                    "API": api.firewall.name,
                    "load balancer": services.firewall.name,
                },
                loader_log_group=services.loader.log_group,
                topic_key=topic_key,
                alarm_email=config.alarm_email,
            ),
        )
