"""The Kinesis stream merchants' transactions flow through."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from constructs import Construct


@dataclass(frozen=True, kw_only=True)
class TransactionStreamProps:
    """Props of :class:`TransactionStream`.

    Attributes:
        stream_name: the stream's name (carries the environment).
        on_demand: on-demand capacity mode (Kinesis adds shards as the writes grow);
            otherwise provisioned with ``shard_count`` shards.
        shard_count: provisioned shards (1 MB/s or 1,000 records/s written each); unused
            in on-demand mode.
        retention_hours: how long records stay readable (24 to 8760).
    """

    stream_name: str
    on_demand: bool
    shard_count: int
    retention_hours: int


class TransactionStream(Construct):
    """Kinesis stream encrypted with its own customer-managed key.

    On-demand (the default) makes the capacity follow the load: Kinesis keeps room for
    twice the peak write rate of the last 30 days and splits shards as it grows; the
    stream-writer follows the new shards itself (it reads child shards after their parents,
    docs/stream-writer.md). Provisioned is cheaper under a steady high load, but its shard
    count is fixed here: size it from the capacity model (docs/cost.md).
    """

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
            stream_name=props.stream_name,
            stream_mode=(
                kinesis.StreamMode.ON_DEMAND if props.on_demand else kinesis.StreamMode.PROVISIONED
            ),
            shard_count=None if props.on_demand else props.shard_count,
            retention_period=Duration.hours(props.retention_hours),
            encryption=kinesis.StreamEncryption.KMS,
            encryption_key=self.key,
        )
