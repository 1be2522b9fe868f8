"""Data stack: every stateful resource (stream, storage, queues, lease table, database,
secrets, user pool, image repositories). Kept apart so the stateless stacks can be
destroyed and redeployed without touching data."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_backup as backup
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from cardstream_infra.components.app_secrets import AppSecrets
from cardstream_infra.components.audit_logs import AuditLogBucket, AuditLogBucketProps
from cardstream_infra.components.backups import Backups, BackupsProps
from cardstream_infra.components.database import Database, DatabaseProps
from cardstream_infra.components.fargate_task import TaskLogging
from cardstream_infra.components.identity import Identity, IdentityProps
from cardstream_infra.components.jwks_mirror import JwksMirror, JwksMirrorProps
from cardstream_infra.components.landing import LandingStorage, LandingStorageProps
from cardstream_infra.components.lease_table import LeaseTable
from cardstream_infra.components.migration import MigrationTask, MigrationTaskProps
from cardstream_infra.components.network import Network
from cardstream_infra.components.registry import ImageRepositories
from cardstream_infra.components.stream import TransactionStream, TransactionStreamProps
from cardstream_infra.config import IMAGES, DeploymentConfig
from cardstream_shared import resource_names as names


class DataStack(Stack):
    """Stateful resources, all encrypted with customer-managed keys and retained."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        network: Network,
        log_key: kms.IKey,
        log_retention: logs.RetentionDays,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.stream = TransactionStream(
            self,
            "Stream",
            props=TransactionStreamProps(
                stream_name=config.scoped(names.STREAM_NAME),
                on_demand=config.stream_mode == "on_demand",
                shard_count=config.shard_count,
                retention_hours=config.stream_retention_hours,
            ),
        )
        self.landing = LandingStorage(
            self,
            "Landing",
            props=LandingStorageProps(
                queue_name=config.scoped(names.LANDED_QUEUE),
                dead_letter_queue_name=config.scoped(names.LANDED_DLQ),
                bucket_name=config.landing_bucket_name,
                log_bucket_name=config.access_log_bucket_name,
                retention_days=config.landing_retention_days,
            ),
        )
        self.audit_logs = AuditLogBucket(
            self,
            "AuditLogs",
            props=AuditLogBucketProps(
                bucket_name=config.audit_log_bucket_name,
                retention_days=config.log_retention_days,
                compliance_mode=config.environment == "prod",
                access_log_bucket=self.landing.log_bucket,
            ),
        )
        self.leases = LeaseTable(self, "Leases", table_name=config.scoped(names.LEASE_TABLE))
        self.secrets = AppSecrets(
            self, "Secrets", pan_key_secret_name=config.scoped(names.PAN_KEY_SECRET)
        )
        self.database = Database(
            self,
            "Database",
            props=DatabaseProps(
                role_secret_names={
                    role: config.scoped(secret) for role, secret in names.DB_ROLE_SECRETS.items()
                },
                identifier=f"{config.prefix}-postgres",
                vpc=network.vpc,
                subnets=network.data_subnets,
                security_group=network.database_sg,
                rotation_security_group=network.rotation_sg,
                rotation_subnets=network.app_subnets,
                secrets_key=self.secrets.key,
                instance_class=config.db_instance_class,
                allocated_storage_gib=config.db_allocated_storage_gib,
                max_allocated_storage_gib=config.db_max_allocated_storage_gib,
                multi_az=config.db_multi_az,
                max_connections=config.db_max_connections,
                backup_retention_days=config.db_backup_retention_days,
            ),
        )
        self.backups = Backups(
            self,
            "Backups",
            props=BackupsProps(
                name=f"{config.prefix}-backups",
                resources=[
                    backup.BackupResource.from_rds_database_instance(self.database.instance),
                    backup.BackupResource.from_dynamo_db_table(self.leases.table),
                ],
                retention_days=config.backup_retention_days,
            ),
        )
        self.identity = Identity(
            self,
            "Identity",
            props=IdentityProps(
                domain_prefix=f"{config.prefix}-{config.account}",
                region=config.region,
                merchants=config.merchants,
                registry_path=config.merchant_registry_path,
                dashboard_url=config.dashboard_url,
            ),
        )
        self.registry = ImageRepositories(self, "Images", prefix=config.prefix, services=IMAGES)
        self.jwks = JwksMirror(
            self,
            "Jwks",
            props=JwksMirrorProps(
                bucket_name=config.jwks_bucket_name,
                region=config.region,
                s3_endpoint=network.s3_endpoint,
                access_log_bucket=self.landing.log_bucket,
            ),
        )
        # Schema changes belong with the database: CI runs this task (on the network
        # stack's cluster) after the data stack and before the services that need the schema.
        self.migration = MigrationTask(
            self,
            "Migration",
            props=MigrationTaskProps(
                repository=self.registry.repositories["db-loader"],
                image_digest=config.image_digests["db-loader"],
                master_secret=self.database.master_secret,
                role_secrets=self.database.role_secrets,
                secrets_key=self.secrets.key,
                region=config.region,
                logging=TaskLogging(key=log_key, retention=log_retention),
                family=f"{config.prefix}-migrate",
            ),
        )
        CfnOutput(self, "LandingBucket", value=self.landing.bucket.bucket_name)
        CfnOutput(self, "LandedQueueUrl", value=self.landing.queue.queue_url)
        CfnOutput(
            self, "DatabaseEndpoint", value=self.database.instance.db_instance_endpoint_address
        )
        CfnOutput(self, "MasterSecretArn", value=self.database.master_secret.secret_arn)
        CfnOutput(
            self,
            "MigrationTaskDefinition",
            value=self.migration.task_definition.task_definition_arn,
        )
        CfnOutput(self, "UserPoolId", value=self.identity.user_pool.user_pool_id)
        CfnOutput(self, "JwksBucket", value=config.jwks_bucket_name)
        CfnOutput(self, "CognitoJwksUrl", value=self.identity.jwks_url)
        for name, client in self.identity.merchant_clients.items():
            CfnOutput(
                self,
                f"MerchantClient{name.title().replace('-', '')}",
                description=f"app client id of merchant {name}",
                value=client.user_pool_client_id,
            )
        # Where `cardstream merchant add --aws --registry-path` writes a new merchant's entry.
        CfnOutput(self, "MerchantRegistryPath", value=config.merchant_registry_path)
        CfnOutput(self, "OperatorClientId", value=self.identity.operator_client.user_pool_client_id)
        CfnOutput(self, "HostedUiUrl", value=self.identity.hosted_ui_url)
        CfnOutput(
            self,
            "TokenEndpoint",
            value=f"{self.identity.domain.base_url()}/oauth2/token",
        )
