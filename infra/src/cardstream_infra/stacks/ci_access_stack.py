"""CI access stack: the roles GitHub Actions deploys this environment with.

Deployed once by an administrator, before the first workflow run, and again only when the
deploy job's needs change; never by the workflow itself, so a deployment cannot widen its
own permissions."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from cardstream_infra.components.github_roles import GithubRoles, GithubRolesProps
from cardstream_infra.config import IMAGES, DeploymentConfig
from cardstream_shared import resource_names as names


class CiAccessStack(Stack):
    """The deploy and diff roles of one environment, trusted by GitHub's OIDC tokens."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.roles = GithubRoles(
            self,
            "Github",
            props=GithubRolesProps(
                repository=config.github_repository,
                environment=config.environment,
                prefix=config.prefix,
                images=IMAGES,
                jwks_bucket=config.jwks_bucket_name,
                pan_key_secret=config.scoped(names.PAN_KEY_SECRET),
            ),
        )
        # The GitHub environment's variables AWS_DEPLOY_ROLE_ARN and AWS_DIFF_ROLE_ARN.
        CfnOutput(self, "DeployRoleArn", value=self.roles.deploy_role.role_arn)
        CfnOutput(self, "DiffRoleArn", value=self.roles.diff_role.role_arn)
