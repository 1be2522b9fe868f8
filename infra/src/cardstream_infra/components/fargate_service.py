"""One long-running Fargate service: its task (see ``fargate_task``), the service with a
deployment circuit breaker, an autoscaling target, and, for web services, the load
balancer's target group."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from constructs import Construct

from cardstream_infra.components.fargate_task import FargateTask, FargateTaskProps


@dataclass(frozen=True, kw_only=True)
class ServicePlacement:
    """Where every service of the deployment runs.

    Attributes:
        cluster: the ECS cluster.
        subnets: where tasks run.
        name_prefix: task definition families are ``<name_prefix>-<service>``.
    """

    cluster: ecs.ICluster
    subnets: ec2.SubnetSelection
    name_prefix: str


@dataclass(frozen=True, kw_only=True)
class LoadBalancedTarget:
    """The listener a web service is reached through.

    Attributes:
        listener: the ALB listener forwarding to the service.
        deregistration_delay_s: how long a stopping task keeps serving requests in flight.
    """

    listener: elbv2.IApplicationListener
    deregistration_delay_s: int


@dataclass(frozen=True, kw_only=True)
class FargateWorkloadProps(FargateTaskProps):
    """Props of :class:`FargateWorkload`: those of its task, plus

    Attributes:
        placement: cluster and subnets.
        security_group: the workload's security group.
        min_tasks: autoscaling floor (also the initial desired count).
        max_tasks: autoscaling ceiling.
        target: the listener of a web service (``None`` for workers).
    """

    placement: ServicePlacement
    security_group: ec2.ISecurityGroup
    min_tasks: int = 1
    max_tasks: int = 2
    target: LoadBalancedTarget | None = None


class FargateWorkload(FargateTask):
    """Task definition + service; ``scaling`` is where stacks attach scaling policies."""

    def __init__(self, scope: Construct, construct_id: str, *, props: FargateWorkloadProps) -> None:
        if props.family is None:
            props = dataclasses.replace(props, family=f"{props.placement.name_prefix}-{props.name}")
        super().__init__(scope, construct_id, props=props)
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=props.placement.cluster,
            task_definition=self.task_definition,
            service_name=f"cardstream-{props.name}",
            desired_count=props.min_tasks,
            security_groups=[props.security_group],
            vpc_subnets=props.placement.subnets,
            assign_public_ip=False,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            min_healthy_percent=100,
            max_healthy_percent=200,
        )
        self.scaling = self.service.auto_scale_task_count(
            min_capacity=props.min_tasks, max_capacity=props.max_tasks
        )
        self.target_group: elbv2.ApplicationTargetGroup | None = None
        if props.target is not None:
            if props.health_port is None:
                raise ValueError(f"{props.name}: a load-balanced service needs health_port")
            self.target_group = props.target.listener.add_targets(
                construct_id,
                port=props.health_port,
                protocol=(
                    elbv2.ApplicationProtocol.HTTPS
                    if props.serves_tls
                    else elbv2.ApplicationProtocol.HTTP
                ),
                targets=[self.service],
                health_check=elbv2.HealthCheck(
                    path="/healthz",
                    healthy_http_codes="200",
                    protocol=elbv2.Protocol.HTTPS if props.serves_tls else elbv2.Protocol.HTTP,
                ),
                deregistration_delay=Duration.seconds(props.target.deregistration_delay_s),
            )

    def scale_on_requests(self, requests_per_task: int) -> None:
        """Track ALB requests per task and minute (web services only)."""
        if self.target_group is None:
            raise ValueError("request-count scaling needs a load-balanced service")
        self.scaling.scale_on_request_count(
            "Requests", requests_per_target=requests_per_task, target_group=self.target_group
        )
