"""Create every AWS resource the services use, under the names the CDK app uses.

Used by ``cardstream up`` against moto and by the compose one-shot job against whichever
emulator compose runs. Every step is idempotent: running it twice changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from cardstream_shared import resource_names as names


@dataclass(frozen=True)
class AwsResources:
    """What was created, for the services' settings and ``stack.json``."""

    stream_name: str
    stream_arn: str
    landing_bucket: str
    access_log_bucket: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    lease_table: str


def _ignore_exists(call: Any, *args: Any, codes: tuple[str, ...], **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in codes:
            return None
        raise


def create_stream(kinesis: Any, *, shards: int, retention_hours: int = 24) -> str:
    """The transaction stream, encrypted, ACTIVE on return; its ARN."""
    _ignore_exists(
        kinesis.create_stream,
        StreamName=names.STREAM_NAME,
        ShardCount=shards,
        codes=("ResourceInUseException",),
    )
    kinesis.get_waiter("stream_exists").wait(
        StreamName=names.STREAM_NAME, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
    )
    if retention_hours > 24:
        _ignore_exists(
            kinesis.increase_stream_retention_period,
            StreamName=names.STREAM_NAME,
            RetentionPeriodHours=retention_hours,
            codes=("InvalidArgumentException",),
        )
    summary = kinesis.describe_stream_summary(StreamName=names.STREAM_NAME)
    return str(summary["StreamDescriptionSummary"]["StreamARN"])


def create_queues(sqs: Any, *, visibility_timeout_s: int = 60) -> tuple[str, str, str, str]:
    """The landed-objects queue and its DLQ with the redrive policy; urls and ARNs."""
    dlq_url = sqs.create_queue(
        QueueName=names.LANDED_DLQ,
        Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600), "SqsManagedSseEnabled": "true"},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    attributes = {
        "VisibilityTimeout": str(visibility_timeout_s),
        "MessageRetentionPeriod": str(4 * 24 * 3600),
        "ReceiveMessageWaitTimeSeconds": "20",
        "SqsManagedSseEnabled": "true",
        # The loader never deletes a failing message; SQS moves it here after N receives.
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(names.MAX_RECEIVE_COUNT)}
        ),
    }
    try:
        queue_url = sqs.create_queue(QueueName=names.LANDED_QUEUE, Attributes=attributes)[
            "QueueUrl"
        ]
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("QueueAlreadyExists", "QueueNameExists"):
            raise
        queue_url = sqs.get_queue_url(QueueName=names.LANDED_QUEUE)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes=attributes)
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    return queue_url, queue_arn, dlq_url, dlq_arn


def create_buckets(s3: Any, *, queue_url: str, queue_arn: str, sqs: Any, region: str) -> None:
    """Landing and access-log buckets, locked down, with the raw/ notification to SQS."""
    for bucket in (names.ACCESS_LOG_BUCKET, names.LANDING_BUCKET):
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        _ignore_exists(
            s3.create_bucket, **kwargs, codes=("BucketAlreadyOwnedByYou", "BucketAlreadyExists")
        )
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
            },
        )
    s3.put_bucket_versioning(
        Bucket=names.LANDING_BUCKET, VersioningConfiguration={"Status": "Enabled"}
    )
    # Server access logs are the audit trail of who read or wrote landed objects.
    s3.put_bucket_policy(
        Bucket=names.ACCESS_LOG_BUCKET,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "S3ServerAccessLogs",
                        "Effect": "Allow",
                        "Principal": {"Service": "logging.s3.amazonaws.com"},
                        "Action": "s3:PutObject",
                        "Resource": f"arn:aws:s3:::{names.ACCESS_LOG_BUCKET}/*",
                    }
                ],
            }
        ),
    )
    s3.put_bucket_logging(
        Bucket=names.LANDING_BUCKET,
        BucketLoggingStatus={
            "LoggingEnabled": {"TargetBucket": names.ACCESS_LOG_BUCKET, "TargetPrefix": "landing/"}
        },
    )
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "Policy": json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "s3.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": queue_arn,
                            "Condition": {
                                "ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{names.LANDING_BUCKET}"}
                            },
                        }
                    ],
                }
            )
        },
    )
    s3.put_bucket_notification_configuration(
        Bucket=names.LANDING_BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "raw-objects-to-loader",
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {"FilterRules": [{"Name": "prefix", "Value": names.RAW_PREFIX}]}
                    },
                }
            ]
        },
    )


def create_lease_table(dynamodb: Any) -> None:
    """The stream-writer's lease table: one item per shard, keyed by ``leaseKey``."""
    _ignore_exists(
        dynamodb.create_table,
        TableName=names.LEASE_TABLE,
        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        SSESpecification={"Enabled": True},
        codes=("ResourceInUseException",),
    )
    dynamodb.get_waiter("table_exists").wait(
        TableName=names.LEASE_TABLE, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
    )


def put_secret(secretsmanager: Any, name: str, value: str, *, overwrite: bool = False) -> None:
    """Create ``name`` with ``value``; an existing secret is kept unless ``overwrite``."""
    try:
        secretsmanager.create_secret(Name=name, SecretString=value)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceExistsException":
            raise
        if overwrite:
            secretsmanager.put_secret_value(SecretId=name, SecretString=value)


def create_all(clients: dict[str, Any], *, region: str, shards: int) -> AwsResources:
    """Create the stream, queues, buckets and lease table (secrets are the caller's)."""
    stream_arn = create_stream(clients["kinesis"], shards=shards)
    queue_url, queue_arn, dlq_url, dlq_arn = create_queues(clients["sqs"])
    create_buckets(
        clients["s3"], queue_url=queue_url, queue_arn=queue_arn, sqs=clients["sqs"], region=region
    )
    create_lease_table(clients["dynamodb"])
    return AwsResources(
        stream_name=names.STREAM_NAME,
        stream_arn=stream_arn,
        landing_bucket=names.LANDING_BUCKET,
        access_log_bucket=names.ACCESS_LOG_BUCKET,
        queue_url=queue_url,
        queue_arn=queue_arn,
        dlq_url=dlq_url,
        dlq_arn=dlq_arn,
        lease_table=names.LEASE_TABLE,
    )
