"""Task-role permissions, spelled out action by action.

No statement here uses a wildcard action or a data resource broader than the workload
needs; KMS use is limited with ``kms:ViaService`` to the service that stores the data.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from aws_cdk.aws_dynamodb import ITable

from cardstream_shared import resource_names as names


def _via(region: str, service: str) -> dict[str, dict[str, str]]:
    return {"StringEquals": {"kms:ViaService": f"{service}.{region}.amazonaws.com"}}


def read_secrets(
    secrets: Sequence[secretsmanager.ISecret], key: kms.IKey, region: str
) -> list[iam.PolicyStatement]:
    """Read the given secrets (and decrypt them, through Secrets Manager only)."""
    return [
        iam.PolicyStatement(
            sid="ReadSecrets",
            actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            resources=[secret.secret_arn for secret in secrets],
        ),
        iam.PolicyStatement(
            sid="DecryptSecrets",
            actions=["kms:Decrypt"],
            resources=[key.key_arn],
            conditions=_via(region, "secretsmanager"),
        ),
    ]


def read_merchant_registry(path: str, region: str) -> list[iam.PolicyStatement]:
    """Read the merchant registry's entries (the ingest-api): the parameters under ``path``
    and nothing else. They are String parameters, so no key is involved."""
    return [
        iam.PolicyStatement(
            sid="ReadMerchantRegistry",
            actions=["ssm:GetParametersByPath"],
            resources=[f"arn:{Aws.PARTITION}:ssm:{region}:{Aws.ACCOUNT_ID}:parameter{path}"],
        )
    ]


def put_records(stream: kinesis.IStream, key: kms.IKey, region: str) -> list[iam.PolicyStatement]:
    """Produce to the stream (the ingest-api)."""
    return [
        iam.PolicyStatement(
            sid="ProduceToStream",
            actions=[
                "kinesis:PutRecord",
                "kinesis:PutRecords",
                "kinesis:DescribeStreamSummary",
                "kinesis:ListShards",
            ],
            resources=[stream.stream_arn],
        ),
        iam.PolicyStatement(
            sid="EncryptStreamRecords",
            actions=["kms:GenerateDataKey"],
            resources=[key.key_arn],
            conditions=_via(region, "kinesis"),
        ),
    ]


def consume_stream(
    stream: kinesis.IStream, key: kms.IKey, region: str
) -> list[iam.PolicyStatement]:
    """Read every shard of the stream (the stream-writer)."""
    return [
        iam.PolicyStatement(
            sid="ConsumeStream",
            actions=[
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:ListShards",
                "kinesis:GetShardIterator",
                "kinesis:GetRecords",
            ],
            resources=[stream.stream_arn],
        ),
        iam.PolicyStatement(
            sid="DecryptStreamRecords",
            actions=["kms:Decrypt"],
            resources=[key.key_arn],
            conditions=_via(region, "kinesis"),
        ),
    ]


def manage_leases(table: ITable, key: kms.IKey, region: str) -> list[iam.PolicyStatement]:
    """Create, renew, steal and release leases (conditional writes) in the lease table."""
    return [
        iam.PolicyStatement(
            sid="Leases",
            actions=[
                "dynamodb:DescribeTable",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:Scan",
                "dynamodb:Query",
            ],
            resources=[table.table_arn],
        ),
        iam.PolicyStatement(
            sid="LeaseTableKey",
            actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
            resources=[key.key_arn],
            conditions=_via(region, "dynamodb"),
        ),
    ]


def bucket_arn(bucket_name: str) -> str:
    """ARN of a bucket from its literal name (keeps policies readable and reviewable)."""
    return f"arn:{Aws.PARTITION}:s3:::{bucket_name}"


def write_landed_objects(bucket_name: str, key: kms.IKey, region: str) -> list[iam.PolicyStatement]:
    """Put (and look for) objects under raw/ and quarantine/ only (the stream-writer)."""
    return [
        iam.PolicyStatement(
            sid="PutLandedObjects",
            # GetObject also authorizes HeadObject: after a refused conditional put the
            # writer checks that the key exists.
            actions=["s3:PutObject", "s3:GetObject"],
            resources=[
                f"{bucket_arn(bucket_name)}/{names.RAW_PREFIX}*",
                f"{bucket_arn(bucket_name)}/{names.QUARANTINE_PREFIX}*",
            ],
        ),
        iam.PolicyStatement(
            sid="MissingKeysAre404",
            # Without ListBucket, S3 answers 403 instead of 404 for a missing key, and the
            # writer could not tell "not written yet" from "forbidden" (S3 HeadObject docs).
            actions=["s3:ListBucket"],
            resources=[bucket_arn(bucket_name)],
        ),
        iam.PolicyStatement(
            sid="EncryptLandedObjects",
            # Decrypt too: multipart uploads of SSE-KMS objects need it (S3 documentation).
            actions=["kms:GenerateDataKey", "kms:Decrypt"],
            resources=[key.key_arn],
            conditions=_via(region, "s3"),
        ),
    ]


def read_landed_objects(bucket_name: str, key: kms.IKey, region: str) -> list[iam.PolicyStatement]:
    """Get objects under raw/ only (the db-loader)."""
    return [
        iam.PolicyStatement(
            sid="GetLandedObjects",
            actions=["s3:GetObject"],
            resources=[f"{bucket_arn(bucket_name)}/{names.RAW_PREFIX}*"],
        ),
        iam.PolicyStatement(
            sid="DecryptLandedObjects",
            actions=["kms:Decrypt"],
            resources=[key.key_arn],
            conditions=_via(region, "s3"),
        ),
    ]


def consume_queue(queue: sqs.IQueue, key: kms.IKey, region: str) -> list[iam.PolicyStatement]:
    """Receive, extend and delete notifications (never send, never purge)."""
    return [
        iam.PolicyStatement(
            sid="ConsumeQueue",
            actions=[
                "sqs:ReceiveMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
            ],
            resources=[queue.queue_arn],
        ),
        iam.PolicyStatement(
            sid="DecryptQueue",
            actions=["kms:Decrypt"],
            resources=[key.key_arn],
            conditions=_via(region, "sqs"),
        ),
    ]


def observe_pipeline(
    *, queues: Sequence[sqs.IQueue], stream: kinesis.IStream, bucket_name: str
) -> list[iam.PolicyStatement]:
    """Queue depths, stream summary and iterator age, and the quarantine listing, for the
    dashboard's health panel."""
    return [
        iam.PolicyStatement(
            sid="StreamIteratorAge",
            # CloudWatch has no resource-level permissions for reading metrics (IAM
            # service authorization reference), so this action needs Resource "*".
            actions=["cloudwatch:GetMetricStatistics"],
            resources=["*"],
        ),
        iam.PolicyStatement(
            sid="ListQuarantine",
            actions=["s3:ListBucket"],
            resources=[bucket_arn(bucket_name)],
            conditions={"StringLike": {"s3:prefix": [f"{names.QUARANTINE_PREFIX}*"]}},
        ),
        iam.PolicyStatement(
            sid="QueueDepths",
            actions=["sqs:GetQueueAttributes"],
            resources=[queue.queue_arn for queue in queues],
        ),
        iam.PolicyStatement(
            sid="StreamSummary",
            actions=["kinesis:DescribeStreamSummary"],
            resources=[stream.stream_arn],
        ),
    ]
