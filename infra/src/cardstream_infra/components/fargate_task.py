"""One Fargate task definition with its container: the task role holding exactly the given
permissions, an encrypted and retained log group, a non-root user on a read-only root
filesystem. The long-running services and the one-off migration task are both built on it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

# The images create this user (Dockerfile); no task runs as root.
CONTAINER_USER = "10001"


def health_check_command(port: int, *, tls: bool) -> list[str]:
    """ECS ignores the image's HEALTHCHECK, so the task definition repeats it. Over TLS the
    probe accepts the task's own self-signed certificate: it talks to itself on loopback."""
    if tls:
        probe = (
            "import ssl,urllib.request;"
            "c=ssl.create_default_context();c.check_hostname=False;c.verify_mode=ssl.CERT_NONE;"
            f"urllib.request.urlopen('https://127.0.0.1:{port}/healthz',timeout=3,context=c)"
        )
    else:
        probe = (
            "import urllib.request;"
            f"urllib.request.urlopen('http://127.0.0.1:{port}/healthz', timeout=3)"
        )
    return ["CMD", "python", "-c", probe]


@dataclass(frozen=True, kw_only=True)
class TaskLogging:
    """Where a task's logs go: the deployment's log key and retention.

    Attributes:
        key: KMS key of the log group.
        retention: log group retention.
    """

    key: kms.IKey
    retention: logs.RetentionDays


@dataclass(frozen=True, kw_only=True)
class FargateTaskProps:
    """Props of :class:`FargateTask`.

    Attributes:
        name: container name and log stream prefix, e.g. ``ingest-api``.
        image: the image to run (an ECR repository at one tag).
        logging: log key and retention.
        statements: every permission of the task role; nothing else is granted.
        environment: plain settings (resource names, never secret values).
        secrets: settings ECS takes from Secrets Manager at task start.
        command: container command (``None``: the image's own).
        health_port: port of the container's ``/healthz`` (``None``: a one-off task, no
            port and no health check).
        serves_tls: the container serves HTTPS on ``health_port`` (a certificate it makes
            at start-up); the health check and the load balancer use HTTPS.
        cpu: task CPU units.
        memory_mib: task memory.
        family: task definition family (``None``: generated).
        stop_timeout_s: seconds between SIGTERM and SIGKILL.
    """

    name: str
    image: ecs.ContainerImage
    logging: TaskLogging
    statements: Sequence[iam.PolicyStatement]
    environment: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, ecs.Secret] = field(default_factory=dict)
    command: Sequence[str] | None = None
    health_port: int | None = None
    serves_tls: bool = False
    cpu: int = 512
    memory_mib: int = 1024
    family: str | None = None
    stop_timeout_s: int = 60


class FargateTask(Construct):
    """Log group, task role and its policy, task definition and its one container."""

    def __init__(self, scope: Construct, construct_id: str, *, props: FargateTaskProps) -> None:
        super().__init__(scope, construct_id)
        self.name = props.name
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            encryption_key=props.logging.key,
            retention=props.logging.retention,
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
            family=props.family,
            runtime_platform=ecs.RuntimePlatform(
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
                cpu_architecture=ecs.CpuArchitecture.X86_64,
            ),
        )
        self.container = self.task_definition.add_container(
            "App",
            container_name=props.name,
            image=props.image,
            command=list(props.command) if props.command is not None else None,
            environment=dict(props.environment),
            secrets=dict(props.secrets),
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix=props.name,
                log_group=self.log_group,
                mode=ecs.AwsLogDriverMode.NON_BLOCKING,
            ),
            port_mappings=(
                [ecs.PortMapping(container_port=props.health_port)]
                if props.health_port is not None
                else None
            ),
            health_check=(
                ecs.HealthCheck(
                    command=health_check_command(props.health_port, tls=props.serves_tls),
                    interval=Duration.seconds(15),
                    timeout=Duration.seconds(5),
                    retries=3,
                    start_period=Duration.seconds(30),
                )
                if props.health_port is not None
                else None
            ),
            readonly_root_filesystem=True,
            user=CONTAINER_USER,
            stop_timeout=Duration.seconds(props.stop_timeout_s),
        )
        # The root filesystem is read-only; Python and uvicorn still need a scratch /tmp.
        self.task_definition.add_volume(name="tmp")
        self.container.add_mount_points(
            ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False)  # noqa: S108
        )
