"""ECR repositories, one per service image."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ecr as ecr
from constructs import Construct


class ImageRepositories(Construct):
    """Immutable-tag, scan-on-push repositories named ``<prefix>/<service>``
    (``cardstream-<env>/ingest-api``)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, prefix: str, services: Sequence[str]
    ) -> None:
        super().__init__(scope, construct_id)
        self.repositories: dict[str, ecr.Repository] = {}
        for service in services:
            self.repositories[service] = ecr.Repository(
                self,
                service.title().replace("-", ""),
                repository_name=f"{prefix}/{service}",
                # CI tags by commit SHA: an immutable tag always names the same image.
                image_tag_mutability=ecr.TagMutability.IMMUTABLE,
                image_scan_on_push=True,
                encryption=ecr.RepositoryEncryption.KMS,
                removal_policy=RemovalPolicy.RETAIN,
                lifecycle_rules=[
                    ecr.LifecycleRule(description="keep the last 50 images", max_image_count=50)
                ],
            )
