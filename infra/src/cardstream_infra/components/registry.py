"""ECR repositories, one per service image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ecr as ecr
from constructs import Construct

# The deploy workflow pushes each image by digest and then tags it with the commit it was
# built from: `git-<40 hex digits>`. Only these tags are counted for expiry.
COMMIT_TAG_PREFIX: Final = "git-"
# Images of the last this many deployed commits are kept (docs/deploy.md, "Image
# retention"): the running one and every one a rollback would go back to are among them.
KEPT_COMMIT_IMAGES: Final = 100


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
                # A tag, once given, always names the same image.
                image_tag_mutability=ecr.TagMutability.IMMUTABLE,
                image_scan_on_push=True,
                encryption=ecr.RepositoryEncryption.KMS,
                removal_policy=RemovalPolicy.RETAIN,
                # Only commit-tagged images are counted and expired. An image index's own
                # manifests (the image of each platform, its SBOM and provenance) are
                # untagged: a rule over untagged or all images would count them and could
                # take them from under an index a task still runs.
                lifecycle_rules=[
                    ecr.LifecycleRule(
                        description=f"keep the images of the last {KEPT_COMMIT_IMAGES} commits",
                        tag_status=ecr.TagStatus.TAGGED,
                        tag_prefix_list=[COMMIT_TAG_PREFIX],
                        max_image_count=KEPT_COMMIT_IMAGES,
                    )
                ],
            )
