"""The roles GitHub Actions assumes with its OIDC token: no access key is stored anywhere.

The deploy role may do what the deploy job of ``.github/workflows/deploy.yml`` does and
nothing else (assume the CDK bootstrap roles that deploy, push the images, copy the JWKS,
check the PAN keyring, run the migration task); the diff role may only read the deployed
templates through CDK's lookup role. Each trusts exactly one kind of token: the deploy role
the environment's jobs (the GitHub environment admits only main), the diff role main's jobs
outside an environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from aws_cdk import DefaultStackSynthesizer, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

GITHUB_OIDC_HOST: Final = "token.actions.githubusercontent.com"
STS_AUDIENCE: Final = "sts.amazonaws.com"


@dataclass(frozen=True, kw_only=True)
class GithubRolesProps:
    """Props of :class:`GithubRoles`.

    Attributes:
        repository: ``owner/name`` of the GitHub repository whose workflows deploy.
        environment: the deployment's environment (its GitHub environment has that name).
        prefix: the deployment's name prefix (``cardstream-<env>``).
        images: the service images, one ECR repository ``<prefix>/<image>`` each.
        jwks_bucket: bucket of the JWKS copy the deploy job writes ``jwks.json`` to.
        pan_key_secret: name of the PAN keyring secret (the job lists its versions).
    """

    repository: str
    environment: str
    prefix: str
    images: Sequence[str]
    jwks_bucket: str
    pan_key_secret: str


class GithubRoles(Construct):
    """The deploy role and the read-only diff role of one environment."""

    def __init__(self, scope: Construct, construct_id: str, *, props: GithubRolesProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        account, region, partition = stack.account, stack.region, stack.partition
        # One provider per account, shared by the environments that live in it: created once
        # by an administrator (docs/deploy.md, section 3), like the CDK bootstrap.
        provider = f"arn:{partition}:iam::{account}:oidc-provider/{GITHUB_OIDC_HOST}"

        def trusted_by(subject: str) -> iam.IPrincipal:
            # StringEquals, never StringLike: one subject, no wildcard.
            return iam.WebIdentityPrincipal(
                provider,
                {
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": STS_AUDIENCE,
                        f"{GITHUB_OIDC_HOST}:sub": subject,
                    }
                },
            )

        def bootstrap_role(kind: str) -> str:
            qualifier = DefaultStackSynthesizer.DEFAULT_QUALIFIER
            return f"arn:{partition}:iam::{account}:role/cdk-{qualifier}-{kind}-{account}-{region}"

        repositories = [
            f"arn:{partition}:ecr:{region}:{account}:repository/{props.prefix}/{image}"
            for image in props.images
        ]
        self.deploy_role = iam.Role(
            self,
            "DeployRole",
            role_name=f"cardstream-deploy-{props.environment}",
            description="GitHub Actions deploy job of this environment (OIDC, main only)",
            assumed_by=trusted_by(f"repo:{props.repository}:environment:{props.environment}"),
        )
        self.deploy_policy = iam.ManagedPolicy(
            self,
            "DeployPolicy",
            roles=[self.deploy_role],
            statements=[
                # CloudFormation does the deployment with the bootstrap's roles; the file
                # publishing role uploads the stacks' assets (the images are not assets).
                iam.PolicyStatement(
                    sid="CdkBootstrapRoles",
                    actions=["sts:AssumeRole"],
                    resources=[
                        bootstrap_role("deploy-role"),
                        bootstrap_role("file-publishing-role"),
                        bootstrap_role("lookup-role"),
                    ],
                ),
                iam.PolicyStatement(
                    sid="StackOutputs",
                    actions=["cloudformation:DescribeStacks"],
                    resources=[
                        f"arn:{partition}:cloudformation:{region}:{account}:stack/"
                        f"{props.prefix}-{kind}/*"
                        for kind in ("network", "data")
                    ],
                ),
                # Registry log-in has no resource-level permission.
                iam.PolicyStatement(
                    sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]
                ),
                iam.PolicyStatement(
                    sid="PushImagesByDigest",
                    actions=[
                        "ecr:DescribeImages",
                        "ecr:BatchGetImage",
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:InitiateLayerUpload",
                        "ecr:UploadLayerPart",
                        "ecr:CompleteLayerUpload",
                        "ecr:PutImage",
                    ],
                    resources=repositories,
                ),
                iam.PolicyStatement(
                    sid="CopyJwks",
                    actions=["s3:PutObject"],
                    resources=[f"arn:{partition}:s3:::{props.jwks_bucket}/jwks.json"],
                ),
                # Version ids only: the job checks that a keyring was stored, never reads it.
                iam.PolicyStatement(
                    sid="PanKeyringStored",
                    actions=["secretsmanager:ListSecretVersionIds"],
                    resources=[
                        f"arn:{partition}:secretsmanager:{region}:{account}:secret:"
                        f"{props.pan_key_secret}-??????"
                    ],
                ),
                iam.PolicyStatement(
                    sid="RunMigration",
                    actions=["ecs:RunTask"],
                    resources=[
                        f"arn:{partition}:ecs:{region}:{account}:task-definition/"
                        f"{props.prefix}-migrate:*"
                    ],
                    conditions={
                        "ArnEquals": {
                            "ecs:cluster": f"arn:{partition}:ecs:{region}:{account}:cluster/"
                            f"{props.prefix}"
                        }
                    },
                ),
                iam.PolicyStatement(
                    sid="WaitForMigration",
                    actions=["ecs:DescribeTasks"],
                    resources=[f"arn:{partition}:ecs:{region}:{account}:task/{props.prefix}/*"],
                ),
                # The migration task's roles are the data stack's (names CloudFormation makes
                # from the stack's name), handed to ECS tasks and nothing else.
                iam.PolicyStatement(
                    sid="PassMigrationRoles",
                    actions=["iam:PassRole"],
                    resources=[f"arn:{partition}:iam::{account}:role/{props.prefix}-data-*"],
                    conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
                ),
            ],
        )
        self.diff_role = iam.Role(
            self,
            "DiffRole",
            role_name=f"cardstream-diff-{props.environment}",
            description="GitHub Actions cdk diff job (OIDC, main only, read-only)",
            assumed_by=trusted_by(f"repo:{props.repository}:ref:refs/heads/main"),
        )
        # The lookup role is read-only by design; `cdk diff --no-change-set` needs no more.
        iam.ManagedPolicy(
            self,
            "DiffPolicy",
            roles=[self.diff_role],
            statements=[
                iam.PolicyStatement(
                    sid="CdkLookupRole",
                    actions=["sts:AssumeRole"],
                    resources=[bootstrap_role("lookup-role")],
                )
            ],
        )
