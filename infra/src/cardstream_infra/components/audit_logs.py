"""The audit-log bucket: the load balancer's access logs (every request that reached the
VPC), under S3 Object Lock so that no one can change or delete a log before its retention
ends (PCI DSS 10.3.2, 10.5.1).

S3 server access logs cannot be delivered to a bucket with Object Lock (S3 documentation,
"Enabling Amazon S3 server access logging"), so they keep their own bucket (see
``landing``), which also receives this bucket's access logs.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cardstream_infra.components.private_bucket import archive_then_expire, private_bucket


@dataclass(frozen=True, kw_only=True)
class AuditLogBucketProps:
    """Props of :class:`AuditLogBucket`.

    Attributes:
        bucket_name: the bucket's (globally unique) name.
        retention_days: how long each log is locked, then kept no longer.
        compliance_mode: COMPLIANCE (nobody, the root user included, can shorten or lift the
            lock) rather than GOVERNANCE (principals allowed to bypass it can).
        access_log_bucket: where S3 server access logs of this bucket go.
    """

    bucket_name: str
    retention_days: int
    compliance_mode: bool
    access_log_bucket: s3.IBucket


class AuditLogBucket(Construct):
    """SSE-S3 (the only encryption ALB log delivery supports), versioned, locked, TLS only."""

    def __init__(self, scope: Construct, construct_id: str, *, props: AuditLogBucketProps) -> None:
        super().__init__(scope, construct_id)
        retention = Duration.days(props.retention_days)
        self.bucket = private_bucket(
            self,
            "Bucket",
            bucket_name=props.bucket_name,
            encryption=s3.BucketEncryption.S3_MANAGED,
            object_lock_enabled=True,
            object_lock_default_retention=(
                s3.ObjectLockRetention.compliance(retention)
                if props.compliance_mode
                else s3.ObjectLockRetention.governance(retention)
            ),
            server_access_logs_bucket=props.access_log_bucket,
            server_access_logs_prefix="audit-logs/",
            # A locked version cannot be removed early: expiry hides it, and its deletion as
            # a noncurrent version waits for the lock to end.
            lifecycle_rules=[archive_then_expire(retention, noncurrent=Duration.days(1))],
        )
