"""RDS PostgreSQL in isolated subnets, TLS enforced, with one rotated secret per role."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import jsii
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cardstream_shared import resource_names as names


@dataclass(frozen=True, kw_only=True)
class DatabaseProps:
    """Props of :class:`Database`.

    Attributes:
        identifier: the instance's identifier (fixed: its exported logs go to log groups
            named after it, created beforehand).
        role_secret_names: each login role -> the name of its credentials secret.
        vpc: the VPC.
        subnets: isolated subnets for the instance (no route to the internet).
        security_group: the database's security group (ingress rules set by the network).
        rotation_security_group: security group of the rotation functions.
        rotation_subnets: where the rotation functions run (they need the endpoints).
        secrets_key: KMS key of every credentials secret.
        instance_class: instance class without ``db.``, e.g. ``t4g.medium``.
        allocated_storage_gib: initial storage.
        max_allocated_storage_gib: storage autoscaling ceiling.
        multi_az: standby in a second AZ.
        max_connections: PostgreSQL ``max_connections``.
        backup_retention_days: automated backup retention.
        port: PostgreSQL port.
    """

    identifier: str
    role_secret_names: Mapping[str, str]
    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    security_group: ec2.ISecurityGroup
    rotation_security_group: ec2.ISecurityGroup
    rotation_subnets: ec2.SubnetSelection
    secrets_key: kms.IKey
    instance_class: str
    allocated_storage_gib: int
    max_allocated_storage_gib: int
    multi_az: bool
    max_connections: int
    backup_retention_days: int
    port: int = 5432


@jsii.implements(ec2.IConnectable)
class _FixedPortTarget:
    """An ``IConnectable`` for the database security group on the PostgreSQL port."""

    def __init__(self, group: ec2.ISecurityGroup, port: int) -> None:
        # The rotation construct adds the ingress (database) and egress (function) rules.
        self._connections = ec2.Connections(
            security_groups=[group], default_port=ec2.Port.tcp(port)
        )

    @property
    def connections(self) -> ec2.Connections:
        """The database security group with PostgreSQL as its default port."""
        return self._connections


class Database(Construct):
    """The PostgreSQL instance, its parameter group, master and role secrets, rotation."""

    def __init__(self, scope: Construct, construct_id: str, *, props: DatabaseProps) -> None:
        super().__init__(scope, construct_id)
        engine = rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_17_6)
        self.storage_key = kms.Key(
            self,
            "StorageKey",
            description="cardstream RDS storage encryption",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        parameters = rds.ParameterGroup(
            self,
            "Parameters",
            engine=engine,
            description="cardstream PostgreSQL: TLS only, audit-friendly logging",
            parameters={
                # Refuse every unencrypted connection (PCI DSS 4.2.1 inside the VPC too).
                "rds.force_ssl": "1",
                "max_connections": str(props.max_connections),
                "log_connections": "1",
                "log_disconnections": "1",
                # Statement text could carry personal data: log only slow statements' timing.
                "log_min_duration_statement": "1000",
                "log_statement": "ddl",
            },
        )
        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            instance_identifier=props.identifier,
            engine=engine,
            instance_type=ec2.InstanceType(props.instance_class),
            vpc=props.vpc,
            vpc_subnets=props.subnets,
            security_groups=[props.security_group],
            publicly_accessible=False,
            port=props.port,
            database_name=names.DB_NAME,
            credentials=rds.Credentials.from_generated_secret(
                "cardstream_admin", encryption_key=props.secrets_key
            ),
            parameter_group=parameters,
            multi_az=props.multi_az,
            allocated_storage=props.allocated_storage_gib,
            max_allocated_storage=props.max_allocated_storage_gib,
            storage_type=rds.StorageType.GP3,
            storage_encrypted=True,
            storage_encryption_key=self.storage_key,
            backup_retention=Duration.days(props.backup_retention_days),
            copy_tags_to_snapshot=True,
            deletion_protection=True,
            removal_policy=RemovalPolicy.SNAPSHOT,
            auto_minor_version_upgrade=True,
            iam_authentication=True,
            enable_performance_insights=True,
            performance_insight_encryption_key=self.storage_key,
            monitoring_interval=Duration.seconds(60),
            cloudwatch_logs_exports=["postgresql", "upgrade"],
            ca_certificate=rds.CaCertificate.RDS_CA_RSA2048_G1,
        )
        master = self.instance.secret
        if master is None:
            raise RuntimeError("generated credentials always produce a master secret")
        self.master_secret: secretsmanager.ISecret = master
        # The rotation functions reach the database through its security group on a fixed
        # port; the instance's own connections use its endpoint-port attribute, which would
        # make the network stack (owner of the group) depend on this one.
        target = _FixedPortTarget(props.security_group, props.port)
        secretsmanager.SecretRotation(
            self,
            "RotateMaster",
            application=secretsmanager.SecretRotationApplication.POSTGRES_ROTATION_SINGLE_USER,
            secret=master,
            target=target,
            vpc=props.vpc,
            vpc_subnets=props.rotation_subnets,
            security_group=props.rotation_security_group,
            automatically_after=Duration.days(30),
        )
        self.role_secrets: dict[str, secretsmanager.ISecret] = {}
        # The services find their credentials by these secrets' ARNs.
        for role, secret_name in props.role_secret_names.items():
            secret = rds.DatabaseSecret(
                self,
                f"Role{role.title().replace('_', '')}",
                username=role,
                secret_name=secret_name,
                master_secret=master,
                encryption_key=props.secrets_key,
                # A role name is an identifier: no punctuation surprises in DSNs either.
                exclude_characters=" %+~`#$&*()|[]{}:;<>?!'/@\"\\",
            )
            attached = secret.attach(self.instance)
            # Alternating users: the clone role is GRANTed the original, so a rotation never
            # leaves a running service with a password that no longer works. The first
            # rotation waits for the schedule: the migration task creates the roles first.
            secretsmanager.SecretRotation(
                self,
                f"Rotate{role.title().replace('_', '')}",
                application=secretsmanager.SecretRotationApplication.POSTGRES_ROTATION_MULTI_USER,
                secret=attached,
                master_secret=master,
                target=target,
                vpc=props.vpc,
                vpc_subnets=props.rotation_subnets,
                security_group=props.rotation_security_group,
                automatically_after=Duration.days(30),
                rotate_immediately_on_update=False,
            )
            self.role_secrets[role] = attached
