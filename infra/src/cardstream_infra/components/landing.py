"""Landing storage: the S3 bucket the stream-writer fills, its access-log bucket, and the
``raw/`` ObjectCreated notification to the loader's encrypted queue with a dead-letter queue."""

from __future__ import annotations

from dataclasses import dataclass

import jsii
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk.interfaces import aws_s3 as s3_refs
from constructs import Construct

from cardstream_infra.components.private_bucket import archive_then_expire, private_bucket
from cardstream_shared import resource_names as names


@dataclass(frozen=True, kw_only=True)
class LandingStorageProps:
    """Props of :class:`LandingStorage`.

    Attributes:
        bucket_name: landing bucket name (globally unique).
        log_bucket_name: access-log bucket name (globally unique).
        queue_name: the loader's queue of landed objects.
        dead_letter_queue_name: its dead-letter queue.
        retention_days: days a landed object (and an access-log object) is kept.
        visibility_timeout_s: SQS visibility timeout; the loader extends it while it works.
        queue_retention_days: how long an unprocessed notification stays in the queue.
        dlq_retention_days: how long a dead letter is kept; longer than the queue's so an
            operator has time to inspect and redrive it.
    """

    bucket_name: str
    log_bucket_name: str
    queue_name: str
    dead_letter_queue_name: str
    retention_days: int
    visibility_timeout_s: int = 300
    queue_retention_days: int = 4
    dlq_retention_days: int = 14


class LandingStorage(Construct):
    """Landing bucket (SSE-KMS, versioned, TLS only), log bucket, queue and DLQ."""

    def __init__(self, scope: Construct, construct_id: str, *, props: LandingStorageProps) -> None:
        super().__init__(scope, construct_id)
        self.visibility_timeout_s = props.visibility_timeout_s
        self.bucket_key = kms.Key(
            self,
            "BucketKey",
            description="cardstream landing bucket encryption",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.queue_key = kms.Key(
            self,
            "QueueKey",
            description="cardstream landed-object queues encryption",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # Server access logs only support SSE-S3 on the destination bucket (S3 documentation,
        # "Enabling Amazon S3 server access logging"), hence S3_MANAGED here.
        self.log_bucket = private_bucket(
            self,
            "AccessLogs",
            bucket_name=props.log_bucket_name,
            encryption=s3.BucketEncryption.S3_MANAGED,
            lifecycle_rules=[
                archive_then_expire(
                    Duration.days(props.retention_days), noncurrent=Duration.days(30)
                )
            ],
        )
        self.bucket = private_bucket(
            self,
            "Landing",
            bucket_name=props.bucket_name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.bucket_key,
            # One KMS data key per bucket instead of per object: far fewer KMS requests.
            bucket_key_enabled=True,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="landing/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="landed-objects",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(30),
                        )
                    ],
                    expiration=Duration.days(props.retention_days),
                    noncurrent_version_expiration=Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
        )
        self.dlq = sqs.Queue(
            self,
            "DeadLetters",
            queue_name=props.dead_letter_queue_name,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.queue_key,
            retention_period=Duration.days(props.dlq_retention_days),
            enforce_ssl=True,
        )
        self.queue = sqs.Queue(
            self,
            "Landed",
            queue_name=props.queue_name,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.queue_key,
            # KMS data keys are reused for 5 minutes, cutting KMS calls per message.
            data_key_reuse=Duration.minutes(5),
            visibility_timeout=Duration.seconds(props.visibility_timeout_s),
            retention_period=Duration.days(props.queue_retention_days),
            receive_message_wait_time=Duration.seconds(20),
            enforce_ssl=True,
            # The loader never deletes a failing message; SQS moves it after N receives.
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dlq, max_receive_count=names.MAX_RECEIVE_COUNT
            ),
        )
        # Only raw/ notifies the loader: quarantine/ holds undecodable stream records.
        self.bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            _NotificationQueue(self.queue, self.queue_key),
            s3.NotificationKeyFilter(prefix=names.RAW_PREFIX),
        )


@jsii.implements(s3.IBucketNotificationDestination)
class _NotificationQueue:
    """The queue as the bucket's notification destination. S3 may send to the queue and use
    its key only for this bucket of this account (aws:SourceArn, aws:SourceAccount: no
    confused deputy); CDK's SqsDestination leaves the key statement unconditioned."""

    def __init__(self, queue: sqs.IQueue, key: kms.IKey) -> None:
        self._queue = queue
        self._key = key

    def bind(
        self, scope: Construct, bucket: s3_refs.IBucketRef
    ) -> s3.BucketNotificationDestinationConfig:
        """Allow S3 to notify for ``bucket`` only; the queue policy is a dependency."""
        s3_service = iam.ServicePrincipal("s3.amazonaws.com")
        conditions = {
            "ArnEquals": {"aws:SourceArn": bucket.bucket_ref.bucket_arn},
            "StringEquals": {"aws:SourceAccount": Stack.of(scope).account},
        }
        added = self._queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LandingBucketNotifications",
                principals=[s3_service],
                actions=["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
                resources=[self._queue.queue_arn],
                conditions=conditions,
            )
        )
        self._key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LandingBucketNotifications",
                principals=[s3_service],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],
                conditions=conditions,
            )
        )
        return s3.BucketNotificationDestinationConfig(
            arn=self._queue.queue_arn,
            type=s3.BucketNotificationDestinationType.QUEUE,
            dependencies=[added.policy_dependable] if added.policy_dependable else None,
        )
