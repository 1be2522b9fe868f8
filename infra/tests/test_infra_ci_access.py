"""The CI access stack: GitHub Actions' deploy and diff roles, each trusted by one kind of
OIDC token and allowed exactly what its job does."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
GITHUB_OIDC = "token.actions.githubusercontent.com"
# What the deploy job does besides its `aws` commands: the CDK CLI assumes the bootstrap
# roles, the ECR log-in action asks for a registry token, skopeo pushes layers and manifests.
CDK_ROLES = ("deploy-role", "file-publishing-role", "lookup-role")
NOT_CLI_ACTIONS = {
    "sts:AssumeRole",
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:BatchGetImage",
    "iam:PassRole",
}
# CLI commands whose IAM action is not their own name in PascalCase.
SPECIAL_COMMANDS = {
    ("s3", "cp"): "s3:PutObject",  # an upload from stdin
    ("ecs", "wait"): "ecs:DescribeTasks",  # `wait tasks-stopped` polls DescribeTasks
    ("sts", "get-caller-identity"): None,  # needs no permission
}


def _role(synth: Any, name: str) -> dict[str, Any]:
    (role,) = [
        r["Properties"]
        for r in synth.resources("AWS::IAM::Role", "ci-access").values()
        if r["Properties"]["RoleName"] == name
    ]
    return role


def _policy_of(synth: Any, role_key: str) -> list[dict[str, Any]]:
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in synth.resources("AWS::IAM::ManagedPolicy", "ci-access").values()
        if p["Properties"]["Roles"] == [{"Ref": role_key}]
    ]
    return policy


def _role_key(synth: Any, name: str) -> str:
    (key,) = [
        key.split("/")[-1]
        for key, r in synth.resources("AWS::IAM::Role", "ci-access").items()
        if r["Properties"]["RoleName"] == name
    ]
    return key


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        action = statement["Action"]
        found.update([action] if isinstance(action, str) else action)
    return found


def _arn(value: Any) -> str:
    """An ARN of the template as a string, the partition as ``aws``."""
    if isinstance(value, str):
        return value
    if value == {"Ref": "AWS::Partition"}:
        return "aws"
    separator, parts = value["Fn::Join"]
    return str(separator).join(_arn(part) for part in parts)


def _resources(statements: list[dict[str, Any]], action: str) -> list[str]:
    rendered = []
    for statement in statements:
        actions = statement["Action"]
        if action == actions or action in actions:
            resources = statement["Resource"]
            rendered += [
                _arn(r) for r in (resources if isinstance(resources, list) else [resources])
            ]
    return rendered


def _deploy_job_aws_actions() -> set[str]:
    """The IAM action of every `aws` command the deploy job runs, itself or by its scripts."""
    workflow = yaml.safe_load((REPO / ".github/workflows/deploy.yml").read_text())
    text = "\n".join(step.get("run", "") for step in workflow["jobs"]["deploy"]["steps"])
    scripts = re.findall(r"infra/scripts/[\w.-]+\.sh", text)
    assert "infra/scripts/run-migration.sh" in scripts
    text += "".join((REPO / script).read_text() for script in sorted(set(scripts)))
    actions = set()
    for service, command in re.findall(r"\baws\s+([a-z0-9-]+)\s+([a-z0-9-]+)", text):
        if (service, command) in SPECIAL_COMMANDS:
            action = SPECIAL_COMMANDS[(service, command)]
        else:
            action = f"{service}:{command.title().replace('-', '')}"
        if action is not None:
            actions.add(action)
    return actions


def test_each_role_trusts_one_github_subject(synth: Any) -> None:
    config = synth.config
    expected = {
        f"cardstream-deploy-{config.environment}": (
            f"repo:{config.github_repository}:environment:{config.environment}"
        ),
        f"cardstream-diff-{config.environment}": (
            f"repo:{config.github_repository}:ref:refs/heads/main"
        ),
    }
    roles = synth.resources("AWS::IAM::Role", "ci-access")
    assert {r["Properties"]["RoleName"] for r in roles.values()} == set(expected)
    for name, subject in expected.items():
        (statement,) = _role(synth, name)["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        # Exact values only: a StringLike with a wildcard would admit other branches.
        assert statement["Condition"] == {
            "StringEquals": {
                f"{GITHUB_OIDC}:aud": "sts.amazonaws.com",
                f"{GITHUB_OIDC}:sub": subject,
            }
        }
        provider = json.dumps(statement["Principal"]["Federated"])
        assert f":iam::{config.account}:oidc-provider/{GITHUB_OIDC}" in provider


def test_the_deploy_role_may_do_what_the_deploy_job_does_and_no_more(synth: Any) -> None:
    config = synth.config
    name = f"cardstream-deploy-{config.environment}"
    statements = _policy_of(synth, _role_key(synth, name))
    cli = _deploy_job_aws_actions()
    assert cli >= {"cloudformation:DescribeStacks", "ecs:RunTask", "s3:PutObject"}
    assert _actions(statements) == cli | NOT_CLI_ACTIONS
    roles = _resources(statements, "sts:AssumeRole")
    assert len(roles) == len(CDK_ROLES)
    for kind in CDK_ROLES:
        assert any(
            f"role/cdk-hnb659fds-{kind}-{config.account}-{config.region}" in r for r in roles
        )
    # Nothing beyond this environment's own resources.
    for statement in statements:
        if statement["Action"] not in ("ecr:GetAuthorizationToken", "sts:AssumeRole"):
            assert config.prefix in json.dumps(statement["Resource"]) or (
                config.jwks_bucket_name in json.dumps(statement["Resource"])
            ), statement["Sid"]
    (pass_role,) = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }


def test_the_deploy_role_names_the_resources_the_other_stacks_create(synth: Any) -> None:
    statements = _policy_of(
        synth, _role_key(synth, f"cardstream-deploy-{synth.config.environment}")
    )
    repositories = {
        r["Properties"]["RepositoryName"]
        for r in synth.resources("AWS::ECR::Repository", "data").values()
    }
    pushed = _resources(statements, "ecr:PutImage")
    assert {r.split(":repository/")[1] for r in pushed} == repositories
    (family,) = [
        t["Properties"]["Family"]
        for t in synth.resources("AWS::ECS::TaskDefinition", "data").values()
    ]
    assert any(f":task-definition/{family}:*" in r for r in _resources(statements, "ecs:RunTask"))
    (cluster,) = synth.resources("AWS::ECS::Cluster", "network").values()
    (run_task,) = [s for s in statements if s["Action"] == "ecs:RunTask"]
    (cluster_arn,) = run_task["Condition"]["ArnEquals"].values()
    assert _arn(cluster_arn).endswith(f":cluster/{cluster['Properties']['ClusterName']}")
    (jwks,) = _resources(statements, "s3:PutObject")
    assert f"{synth.config.jwks_bucket_name}/jwks.json" in jwks
    secrets = {
        s["Properties"].get("Name")
        for s in synth.resources("AWS::SecretsManager::Secret", "data").values()
    }
    (keyring,) = _resources(statements, "secretsmanager:ListSecretVersionIds")
    name = keyring.split(":secret:")[1].removesuffix("-??????")
    assert name in secrets
    assert name.endswith("/pan-key")
    for kind in ("network", "data"):
        assert any(
            f":stack/{synth.config.prefix}-{kind}/*" in r
            for r in _resources(statements, "cloudformation:DescribeStacks")
        )


def test_the_diff_role_may_only_read_through_the_cdk_lookup_role(synth: Any) -> None:
    config = synth.config
    statements = _policy_of(synth, _role_key(synth, f"cardstream-diff-{config.environment}"))
    assert _actions(statements) == {"sts:AssumeRole"}
    (role,) = _resources(statements, "sts:AssumeRole")
    assert f"role/cdk-hnb659fds-lookup-role-{config.account}-{config.region}" in role


def test_the_role_arns_are_outputs_and_the_workflow_never_deploys_this_stack(synth: Any) -> None:
    outputs = synth.template("ci-access")["Outputs"]
    assert {"DeployRoleArn", "DiffRoleArn"} <= set(outputs)
    workflow = (REPO / ".github/workflows/deploy.yml").read_text()
    assert "ci-access" not in workflow
    # The trust follows the repository the workflow runs in (GitHub sets the variable).
    cdk = (REPO / "infra/scripts/cdk.sh").read_text()
    assert '-c "cardstream.github_repository=${GITHUB_REPOSITORY}"' in cdk
