"""The Kinesis stream merchants' transactions flow through."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from constructs import Construct

from cardstream_shared import resource_names as names


@dataclass(frozen=True, kw_only=True)
class TransactionStreamProps:
    """Props of :class:`TransactionStream`.

    Attributes:
        shard_count: provisioned shards (1 MB/s or 1,000 records/s written each).
        retention_hours: how long records stay readable (24 to 8760).
    """

    shard_count: int
    retention_hours: int


class TransactionStream(Construct):
    """Provisioned Kinesis stream encrypted with its own customer-managed key."""

    def __init__(
        self, scope: Construct, construct_id: str, *, props: TransactionStreamProps
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description="cardstream Kinesis stream encryption",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.stream = kinesis.Stream(
            self,
            "Stream",
            stream_name=names.STREAM_NAME,
            # Provisioned mode: the stream-writer's autoscaling ceiling is the shard count.
            stream_mode=kinesis.StreamMode.PROVISIONED,
            shard_count=props.shard_count,
            retention_period=Duration.hours(props.retention_hours),
            encryption=kinesis.StreamEncryption.KMS,
            encryption_key=self.key,
        )
