"""One-off Fargate task that creates the database roles and applies the migrations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cardstream_infra.components import permissions
from cardstream_infra.components.fargate_task import FargateTask, FargateTaskProps, TaskLogging


@dataclass(frozen=True, kw_only=True)
class MigrationTaskProps:
    """Props of :class:`MigrationTask`.

    Attributes:
        repository: the db-loader image repository (it ships ``db_loader.migrate``).
        image_digest: digest of the db-loader image to run.
        master_secret: RDS master credentials, injected as ECS secrets.
        role_secrets: each login role -> the secret ``migrate`` reads its password from.
        secrets_key: KMS key of those secrets.
        region: AWS region.
        logging: log key and retention.
        family: task definition family (what the deploy step runs).
    """

    repository: ecr.IRepository
    image_digest: str
    master_secret: secretsmanager.ISecret
    role_secrets: Mapping[str, secretsmanager.ISecret]
    secrets_key: kms.IKey
    region: str
    logging: TaskLogging
    family: str


class MigrationTask(FargateTask):
    """Task definition run by CI (``aws ecs run-task``) after each data deployment."""

    def __init__(self, scope: Construct, construct_id: str, *, props: MigrationTaskProps) -> None:
        # Imported by ARN: ECS's automatic grant on the secret object would also add the role
        # to the KMS key policy; an explicit, ViaService-limited statement is narrower.
        master = secretsmanager.Secret.from_secret_complete_arn(
            scope, f"{construct_id}MasterSecret", props.master_secret.secret_arn
        )
        super().__init__(
            scope,
            construct_id,
            props=FargateTaskProps(
                name="migrate",
                image=ecs.ContainerImage.from_ecr_repository(props.repository, props.image_digest),
                logging=props.logging,
                family=props.family,
                cpu=256,
                memory_mib=512,
                # Builds the admin URL from the libpq variables ECS injects from the master
                # secret (single JSON fields of a secret, not a URL built from them).
                command=["python", "-m", "db_loader.migrate"],
                environment={
                    "AWS_REGION": props.region,
                    # libpq reads PGSSLMODE: encrypted, and the server proves its name with
                    # a certificate from the RDS authorities the image ships
                    # (db_loader.migrate.trust_rds_authorities).
                    "PGSSLMODE": "verify-full",
                    # This environment's role secrets (their names carry the environment).
                    "CARDSTREAM_DB_ROLE_SECRETS": Stack.of(scope).to_json_string(
                        {role: secret.secret_arn for role, secret in props.role_secrets.items()}
                    ),
                },
                secrets={
                    "PGUSER": ecs.Secret.from_secrets_manager(master, "username"),
                    "PGPASSWORD": ecs.Secret.from_secrets_manager(master, "password"),
                    "PGHOST": ecs.Secret.from_secrets_manager(master, "host"),
                    "PGPORT": ecs.Secret.from_secrets_manager(master, "port"),
                    "PGDATABASE": ecs.Secret.from_secrets_manager(master, "dbname"),
                },
                statements=[
                    *permissions.read_secrets(
                        list(props.role_secrets.values()), props.secrets_key, props.region
                    )
                ],
            ),
        )
        self.task_definition.add_to_execution_role_policy(
            iam.PolicyStatement(
                sid="DecryptMasterSecret",
                actions=["kms:Decrypt"],
                resources=[props.secrets_key.key_arn],
                conditions={
                    "StringEquals": {
                        "kms:ViaService": f"secretsmanager.{props.region}.amazonaws.com"
                    }
                },
            )
        )
