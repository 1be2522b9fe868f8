"""One Fargate service: task role with exactly the given permissions, encrypted log group,
container health check, deployment circuit breaker and an autoscaling target."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct


def health_check_command(port: int) -> list[str]:
    """ECS ignores the image's HEALTHCHECK, so the task definition repeats it."""
    probe = (
        "import urllib.request;"
        f"urllib.request.urlopen('http://127.0.0.1:{port}/healthz', timeout=3)"
    )
    return ["CMD", "python", "-c", probe]


@dataclass(frozen=True, kw_only=True)
class FargateWorkloadProps:
    """Props of :class:`FargateWorkload`.

    Attributes:
        name: service name, e.g. ``ingest-api``; also the log stream prefix.
        cluster: the ECS cluster.
        repository: ECR repository of the image.
        image_tag: image tag to run.
        port: port of ``/healthz`` (and of the HTTP listener for web services).
        environment: plain settings (resource names, never secret values).
        secrets: settings taken from Secrets Manager by ECS at task start.
        statements: every permission of the task role; nothing else is granted.
        security_group: the workload's security group.
        subnets: where tasks run.
        log_key: KMS key of the log group.
        log_retention: log group retention.
        cpu: task CPU units.
        memory_mib: task memory.
        min_tasks: autoscaling floor (also the initial desired count).
        max_tasks: autoscaling ceiling.
        stop_timeout_s: seconds between SIGTERM and SIGKILL (workers flush and checkpoint).
        command: container command override (``None``: the image's default).
    """

    name: str
    cluster: ecs.ICluster
    repository: ecr.IRepository
    image_tag: str
    port: int
    environment: Mapping[str, str]
    secrets: Mapping[str, ecs.Secret] = field(default_factory=dict)
    statements: Sequence[iam.PolicyStatement]
    security_group: ec2.ISecurityGroup
    subnets: ec2.SubnetSelection
    log_key: kms.IKey
    log_retention: logs.RetentionDays
    cpu: int = 512
    memory_mib: int = 1024
    min_tasks: int = 1
    max_tasks: int = 2
    stop_timeout_s: int = 60


class FargateWorkload(Construct):
    """Task definition + service; ``scaling`` is where stacks attach scaling policies."""

    def __init__(self, scope: Construct, construct_id: str, *, props: FargateWorkloadProps) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            encryption_key=props.log_key,
            retention=props.log_retention,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"cardstream {props.name} task role",
        )
        if props.statements:
            # An explicit policy rather than grant helpers: grant helpers add wildcard
            # actions (s3:GetObject*, kms:GenerateDataKey*) this design forbids.
            # A customer-managed policy, not an inline one (PCI DSS 7.2: reviewable policies).
            iam.ManagedPolicy(
                self, "TaskPolicy", statements=list(props.statements), roles=[self.task_role]
            )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=props.cpu,
            memory_limit_mib=props.memory_mib,
            task_role=self.task_role,
            runtime_platform=ecs.RuntimePlatform(
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
                cpu_architecture=ecs.CpuArchitecture.X86_64,
            ),
        )
        self.container = self.task_definition.add_container(
            "App",
            container_name=props.name,
            image=ecs.ContainerImage.from_ecr_repository(props.repository, props.image_tag),
            environment=dict(props.environment),
            secrets=dict(props.secrets),
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix=props.name,
                log_group=self.log_group,
                mode=ecs.AwsLogDriverMode.NON_BLOCKING,
            ),
            port_mappings=[ecs.PortMapping(container_port=props.port)],
            health_check=ecs.HealthCheck(
                command=health_check_command(props.port),
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(30),
            ),
            readonly_root_filesystem=True,
            user="10001",
            stop_timeout=Duration.seconds(props.stop_timeout_s),
        )
        # The root filesystem is read-only; Python and uvicorn still need a scratch /tmp.
        self.task_definition.add_volume(name="tmp")
        self.container.add_mount_points(
            ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False)  # noqa: S108
        )
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=props.cluster,
            task_definition=self.task_definition,
            service_name=f"cardstream-{props.name}",
            desired_count=props.min_tasks,
            security_groups=[props.security_group],
            vpc_subnets=props.subnets,
            assign_public_ip=False,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            min_healthy_percent=100,
            max_healthy_percent=200,
        )
        self.scaling = self.service.auto_scale_task_count(
            min_capacity=props.min_tasks, max_capacity=props.max_tasks
        )
