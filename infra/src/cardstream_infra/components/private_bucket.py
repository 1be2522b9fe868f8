"""The deployment's S3 buckets: private, TLS only, versioned, owned by the account, kept."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct


def private_bucket(
    scope: Construct, construct_id: str, *, bucket_name: str, **options: Any
) -> s3.Bucket:
    """A bucket with public access blocked, plain HTTP refused, versioning on, ACLs off and
    a retain policy; ``options`` add encryption, logging, lifecycle, Object Lock."""
    return s3.Bucket(
        scope,
        construct_id,
        bucket_name=bucket_name,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        removal_policy=RemovalPolicy.RETAIN,
        **options,
    )


def archive_then_expire(retention: Duration, *, noncurrent: Duration) -> s3.LifecycleRule:
    """Logs: to Glacier Instant Retrieval after 90 days (still at hand), gone at
    ``retention``; an overwritten or deleted version after ``noncurrent``."""
    return s3.LifecycleRule(
        id="archive-then-expire",
        transitions=[
            s3.Transition(
                storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
                transition_after=Duration.days(90),
            )
        ],
        expiration=retention,
        noncurrent_version_expiration=noncurrent,
    )
