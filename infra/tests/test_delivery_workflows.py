"""CI/CD workflows: tests on pull requests; on main, OIDC deploy in dependency order."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as the boolean true.
    data["on"] = data.pop(True)
    return data


def _steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return steps


def test_ci_runs_make_test_on_pull_requests() -> None:
    ci = _load("ci.yml")
    assert "pull_request" in ci["on"]
    assert "workflow_call" in ci["on"]
    assert ci["permissions"] == {"contents": "read"}
    runs = [step.get("run") for step in _steps(ci, "test")]
    assert "make test" in runs


def test_deploy_runs_on_main_after_the_tests() -> None:
    deploy = _load("deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    assert deploy["jobs"]["test"]["uses"] == "./.github/workflows/ci.yml"
    assert deploy["jobs"]["deploy"]["needs"] == "test"


def test_deploy_uses_an_oidc_role_and_no_stored_keys() -> None:
    text = (WORKFLOWS / "deploy.yml").read_text()
    deploy = _load("deploy.yml")
    assert deploy["jobs"]["deploy"]["permissions"]["id-token"] == "write"
    configure = [
        s
        for s in _steps(deploy, "deploy")
        if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
    ]
    assert len(configure) == 1
    assert "role-to-assume" in configure[0]["with"]
    for forbidden in ("aws-access-key-id", "aws-secret-access-key", "AWS_SECRET_ACCESS_KEY"):
        assert forbidden not in text
    # The keyring check reads version ids only, never the PAN key itself.
    assert "get-secret-value" not in text
    assert "secrets." not in text


def test_stacks_deploy_in_dependency_order_with_images_pushed_between(synth: Any) -> None:
    deploy = _load("deploy.yml")
    order: list[str] = []
    for step in _steps(deploy, "deploy"):
        run = step.get("run", "")
        if "cdk deploy" in run:
            order += re.findall(r"outputs\.prefix \}\}-(\w+)", run)
        if "bake --push" in run:
            order.append("<push>")
        if "run-migration.sh" in run:
            order.append("<migrate>")
        if "list-secret-version-ids" in run:
            order.append("<keyring>")
        if "jwks.json" in run:
            order.append("<jwks>")
    kinds = [
        stack.stack_name.removeprefix(f"{synth.config.prefix}-")
        for stack in synth.stacks.in_order()
    ]
    assert kinds == ["network", "data", "services", "api", "monitoring"]
    # The repositories (data) exist before the push; the schema before the services start.
    assert order == [
        "network",
        "data",
        "<jwks>",
        "<push>",
        "<keyring>",
        "<migrate>",
        "services",
        "api",
        "monitoring",
    ]


def test_every_stack_of_the_app_is_deployed(synth: Any) -> None:
    text = (WORKFLOWS / "deploy.yml").read_text()
    for stack in synth.stacks.in_order():
        kind = stack.stack_name.removeprefix(f"{synth.config.prefix}-")
        assert f"outputs.prefix }}}}-{kind}" in text
