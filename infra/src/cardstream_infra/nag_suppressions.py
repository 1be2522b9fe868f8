"""Every cdk-nag finding cardstream acknowledges, each with the reason it is acceptable.

An acknowledgement is attached to the narrowest construct it concerns, so a new resource
with the same weakness elsewhere is still reported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

from cardstream_infra.components.public_api import DOC_ROUTES
from cardstream_infra.config import DeploymentConfig
from cardstream_shared import resource_names as names

if TYPE_CHECKING:
    from cardstream_infra.deployment import CardstreamStacks

_INLINE_DEFAULT_POLICY = (
    "CDK generates this role's DefaultPolicy (ECR pull, log stream, secret read for ECS "
    "secrets) with exact actions on named resources; task permissions themselves are "
    "customer-managed policies."
)
_EXECUTION_ROLE_STAR = (
    "ecr:GetAuthorizationToken only accepts Resource '*' (ECR API reference); every other "
    "action of the execution role names its repository, log group or secret."
)
_ENV_VARS = (
    "The environment holds resource names, ARNs and tuning values only; secret values are "
    "read from Secrets Manager (by ARN, or as ECS secrets for the migration task)."
)


def _ack(scope: IConstruct, rule: str, reason: str) -> None:
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))


def _ack_packs(scope: IConstruct, rule: str, reason: str) -> None:
    """The same rule of the two compliance packs (PCI DSS 3.2.1, NIST 800-53 rev 5)."""
    for pack in ("PCI.DSS.321", "NIST.800.53.R5"):
        _ack(scope, f"{pack}-{rule}", reason)


def acknowledge_findings(stacks: CardstreamStacks, config: DeploymentConfig) -> None:
    """Attach the acknowledgements to the constructs they concern."""
    network = stacks.network.network
    _ack_packs(
        network.vpc.node.find_child("FlowLog"),
        "IAMNoInlinePolicy",
        "CDK's flow-log role policy allows only log delivery to the one flow-log group.",
    )

    data = stacks.data
    _ack(
        data.stream.stream,
        "AwsSolutions-KDS3",
        "A customer-managed key instead of aws/kinesis: its key policy and rotation are ours "
        "and its use is auditable per principal (PCI DSS 3.6).",
    )
    _ack_packs(
        data.jwks.bucket,
        "S3DefaultEncryptionKMS",
        "The bucket holds only the user pool's public keys, read by unsigned HTTPS from the "
        "VPC endpoint; SSE-KMS would need credentials to decrypt.",
    )
    for bucket in (
        data.landing.bucket,
        data.landing.log_bucket,
        data.jwks.bucket,
        data.audit_logs.bucket,
    ):
        _ack_packs(
            bucket,
            "S3BucketReplicationEnabled",
            "Landed objects are a replayable copy (the stream keeps them for its retention "
            "and PostgreSQL holds the loaded rows with backups); versioning (and the audit "
            "logs' Object Lock) protects against overwrite. Cross-region replication is a "
            "disaster-recovery choice per account.",
        )
    for bucket in (data.landing.log_bucket, data.audit_logs.bucket):
        _ack_packs(
            bucket,
            "S3DefaultEncryptionKMS",
            "S3 server access logs and ALB access logs can only be delivered to buckets "
            "encrypted with SSE-S3 (S3 and ELB documentation); the bucket holds no card data.",
        )
    notifications = data.node.try_find_child(
        "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"
    )
    if notifications is not None:
        _ack(
            notifications,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]",
            "CDK's bucket-notification custom resource runs once per deployment and only "
            "writes its own logs with this policy.",
        )
    _ack_packs(
        data.landing.bucket.node.find_child("Notifications"),
        "IAMNoInlinePolicy",
        "CDK's bucket-notification handler policy allows only PutBucketNotification.",
    )
    _ack(
        data.database.instance,
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AmazonRDSEnhancedMonitoringRole]",
        "The AWS-managed role policy is the documented way for RDS to publish Enhanced "
        "Monitoring metrics; it grants only log delivery to RDSOSMetrics.",
    )
    _ack(
        data.database.instance,
        "AwsSolutions-RDS11",
        "The port is not a control: only the task and rotation security groups reach it, "
        "in isolated subnets, with TLS enforced.",
    )
    if not config.db_multi_az:
        for rule in ("AwsSolutions-RDS3", "NIST.800.53.R5-RDSMultiAZSupport"):
            _ack(
                data.database.instance,
                rule,
                f"Multi-AZ is a per-environment parameter; {config.environment} runs a single "
                "instance with automated and AWS Backup backups to save cost (production "
                "sets it).",
            )
    for rule in ("AwsSolutions-SMG4", "NIST.800.53.R5-SecretsManagerRotationEnabled"):
        _ack(
            data.secrets.pan_key,
            rule,
            "The PAN keyring rotates by adding a key version and re-tokenizing offline "
            "(cardstream_shared.pan keeps old versions); an automatic rotation would change tokens "
            "without that migration.",
        )

    _ack(
        data.backups.selection,
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AWSBackupServiceRolePolicyForBackup]",
        "The AWS-managed policy AWS Backup documents for its service role; the role can be "
        "assumed by AWS Backup only and is used for this plan's two resources.",
    )

    services = stacks.services
    task_definitions = [
        services.ingest.task_definition,
        services.writer.task_definition,
        services.loader.task_definition,
        services.dashboard.task_definition,
        data.migration.task_definition,
    ]
    for task_definition in task_definitions:
        _ack(task_definition, "AwsSolutions-ECS2", _ENV_VARS)
        execution_role = task_definition.execution_role
        if execution_role is not None:
            _ack(execution_role, "AwsSolutions-IAM5[Resource::*]", _EXECUTION_ROLE_STAR)
            _ack_packs(execution_role, "IAMNoInlinePolicy", _INLINE_DEFAULT_POLICY)
    # cdk-nag names a wildcard resource by its rendered ARN, the partition as a pseudo ref.
    landing = f"arn:<AWS::Partition>:s3:::{config.landing_bucket_name}"
    _ack(
        services.writer,
        f"AwsSolutions-IAM5[Resource::{landing}/{names.RAW_PREFIX}*]",
        "Object keys are generated per batch (shard and sequence numbers); the writer may "
        "put any key under raw/ and nothing elsewhere.",
    )
    _ack(
        services.writer,
        f"AwsSolutions-IAM5[Resource::{landing}/{names.QUARANTINE_PREFIX}*]",
        "Undecodable records are written under quarantine/ with generated keys.",
    )
    _ack(
        services.dashboard,
        "AwsSolutions-IAM5[Resource::*]",
        "cloudwatch:GetMetricStatistics has no resource-level permissions (IAM service "
        "authorization reference); it only reads metrics (the stream's iterator age).",
    )
    _ack(
        services.loader,
        f"AwsSolutions-IAM5[Resource::{landing}/{names.RAW_PREFIX}*]",
        "The loader reads whichever raw/ object a notification names, and nothing else.",
    )

    if config.environment != "prod":
        _ack(
            services.ingress.alb,
            "NIST.800.53.R5-ELBDeletionProtectionEnabled",
            f"Deletion protection is on in prod; {config.environment} is torn down and "
            "rebuilt freely (the ALB holds no state).",
        )

    public_api = stacks.api.public_api
    _ack(
        public_api.api,
        "AwsSolutions-APIG2",
        "The gateway validates path parameters; bodies are validated by the ingest-api, "
        "which answers each refused field in problem+json. A gateway model would refuse "
        "without field detail and become a second contract to keep in step.",
    )
    _ack_packs(
        public_api.stage,
        "APIGWCacheEnabledAndEncrypted",
        "No response cache: answers are per merchant and carry transaction data; caching "
        "them at the gateway would keep card-holder data in one more place.",
    )
    _ack_packs(
        public_api.stage,
        "APIGWSSLEnabled",
        "The hop to the backend is HTTPS through the VPC link, the load balancer's "
        "certificate verified against the API's domain; API Gateway client certificates "
        "authenticate to backends that check them, and the ALB is reachable only from the "
        "VPC link's security group.",
    )
    for path in DOC_ROUTES:
        method = public_api.methods[("GET", path)]
        for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
            _ack(
                method,
                rule,
                "Swagger UI, ReDoc and the OpenAPI document describe the API and carry no "
                "data; merchants need them before they hold a token. The firewall still "
                "applies.",
            )

    relay = stacks.services.token_relay
    _ack(
        relay.api.node.find_child("CloudWatchRole"),
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AmazonAPIGatewayPushToCloudWatchLogs]",
        "The account-level role API Gateway writes execution logs with; the AWS-managed "
        "policy is the documented one and allows only log delivery.",
    )
    _ack(
        relay.api,
        "AwsSolutions-APIG2",
        "The relay forwards Cognito's OAuth form posts unchanged; Cognito validates them and "
        "answers OAuth errors itself.",
    )
    for method in relay.methods:
        for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
            _ack(
                method,
                rule,
                "Cognito's token and revocation endpoints authenticate the caller themselves "
                "(authorization code with its PKCE verifier, or the refresh token); the API "
                "is private, reachable only through the VPC's execute-api endpoint.",
            )
    _ack_packs(
        relay.stage,
        "APIGWCacheEnabledAndEncrypted",
        "Token responses must never be cached: each is for one sign-in.",
    )
    _ack_packs(
        relay.stage,
        "APIGWSSLEnabled",
        "The backend is Cognito's public HTTPS endpoint, whose certificate API Gateway "
        "verifies; it does not ask for a client certificate.",
    )

    deploy_policy = stacks.ci_access.roles.deploy_policy
    prefix = config.prefix
    arn = f"arn:<AWS::Partition>:{{}}:{config.region}:{config.account}:{{}}"
    for resource, reason in (
        ("*", "ecr:GetAuthorizationToken (the registry log-in) accepts only Resource '*'."),
        *(
            (
                arn.format("cloudformation", f"stack/{prefix}-{kind}/*"),
                "A stack's ARN ends in an id CloudFormation makes at its creation; the "
                "deploy job reads the outputs of this one stack.",
            )
            for kind in ("network", "data")
        ),
        (
            arn.format("ecs", f"task-definition/{prefix}-migrate:*"),
            "Every revision of the migration task definition (each deployment makes one), "
            "and only on this environment's cluster (ecs:cluster condition).",
        ),
        (
            arn.format("ecs", f"task/{prefix}/*"),
            "Task ids are made at run time; the deploy job waits for the migration task it "
            "started on this environment's cluster.",
        ),
        (
            f"arn:<AWS::Partition>:iam::{config.account}:role/{prefix}-data-*",
            "The migration task's task and execution roles, named by CloudFormation after "
            "the data stack; passed to ECS tasks only (iam:PassedToService).",
        ),
    ):
        _ack(deploy_policy, f"AwsSolutions-IAM5[Resource::{resource}]", reason)
