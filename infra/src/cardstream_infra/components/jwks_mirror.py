"""A copy of the Cognito user pool's public keys (JWKS) that tasks can read without internet.

The tasks run in isolated subnets, and Cognito's JWKS endpoint is not reachable through
PrivateLink for a pool that has a domain. The deploy workflow copies the JWKS into this
bucket; the services fetch it over HTTPS through the S3 gateway endpoint, the only place
the bucket policy lets an unsigned read come from.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cardstream_infra.components.private_bucket import private_bucket

JWKS_KEY = "jwks.json"


@dataclass(frozen=True, kw_only=True)
class JwksMirrorProps:
    """Props of :class:`JwksMirror`.

    Attributes:
        bucket_name: the bucket's (globally unique) name.
        region: its region (part of the HTTPS URL).
        s3_endpoint: the VPC's S3 gateway endpoint, the only origin allowed to read.
        access_log_bucket: where S3 server access logs go.
    """

    bucket_name: str
    region: str
    s3_endpoint: ec2.IGatewayVpcEndpoint
    access_log_bucket: s3.IBucket


class JwksMirror(Construct):
    """Bucket holding ``jwks.json``: public keys only, readable from inside the VPC only."""

    def __init__(self, scope: Construct, construct_id: str, *, props: JwksMirrorProps) -> None:
        super().__init__(scope, construct_id)
        # SSE-S3, not SSE-KMS: the services read without AWS credentials (a JWKS fetch is a
        # plain HTTPS GET), and KMS would refuse an anonymous decrypt. It holds public keys.
        self.bucket = private_bucket(
            self,
            "Bucket",
            bucket_name=props.bucket_name,
            encryption=s3.BucketEncryption.S3_MANAGED,
            server_access_logs_bucket=props.access_log_bucket,
            server_access_logs_prefix="jwks/",
        )
        # A fixed aws:SourceVpce condition keeps this policy non-public for S3's block
        # public access (S3 documentation, "The meaning of public").
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ReadKeysFromTheVpcOnly",
                principals=[iam.AnyPrincipal()],
                actions=["s3:GetObject"],
                resources=[self.bucket.arn_for_objects(JWKS_KEY)],
                conditions={"StringEquals": {"aws:SourceVpce": props.s3_endpoint.vpc_endpoint_id}},
            )
        )
        self.url = f"https://{props.bucket_name}.s3.{props.region}.amazonaws.com/{JWKS_KEY}"
