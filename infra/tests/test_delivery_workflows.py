"""CI/CD workflows: pinned actions, stated permissions, proven images deployed by digest
after a reviewed diff, and the linters (zizmor, shellcheck, GitHub's schemas) clean."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
GITHUB = REPO / ".github"
WORKFLOWS = GITHUB / "workflows"
SERVICES = ("ingest-api", "stream-writer", "db-loader", "dashboard")
# owner/repo[/path]@<40 hex> followed by the version it is, e.g. `# v4.2.1`.
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v?\d+\.\d+\.\d+\s*$")


def _tool(name: str) -> str:
    # Installed into this environment by the infra member's dev group.
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is missing: `uv sync --all-packages` installs it"
    return str(path)


def _parse(text: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(text)
    # YAML 1.1 reads the key `on` as the boolean true.
    data["on"] = data.pop(True)
    return data


def _load(name: str) -> dict[str, Any]:
    return _parse((WORKFLOWS / name).read_text())


def _steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return steps


def _runs(workflow: dict[str, Any], job: str) -> str:
    return "\n".join(step.get("run", "") for step in _steps(workflow, job))


def _uses(workflow: dict[str, Any], job: str, action: str) -> list[dict[str, Any]]:
    return [s for s in _steps(workflow, job) if s.get("uses", "").startswith(f"{action}@")]


def unpinned_actions(text: str) -> list[str]:
    """Each `uses:` of a workflow that is not a full commit SHA with its version beside it
    (local workflows and actions, `./...`, are part of the commit itself)."""
    found = []
    for line in text.splitlines():
        match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
        if match is None or match.group(1).startswith("./"):
            continue
        reference, rest = match.groups()
        if not PINNED.match(reference) or not VERSION_COMMENT.search(rest):
            found.append(line.strip())
    return found


def jobs_without_permissions(workflow: dict[str, Any]) -> list[str]:
    """Jobs that do not state their own permissions (the workflow's default grants none)."""
    missing = [] if workflow.get("permissions") == {} else ["<workflow default>"]
    return missing + [name for name, job in workflow["jobs"].items() if "permissions" not in job]


def _workflow_files() -> list[Path]:
    files = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))
    assert {p.name for p in files} >= {"ci.yml", "deploy.yml"}
    return files


# --- the supply chain ----------------------------------------------------------------------


@pytest.mark.parametrize("path", _workflow_files(), ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_sha_with_its_version(path: Path) -> None:
    assert unpinned_actions(path.read_text()) == []


def test_the_pin_check_finds_a_tag_a_branch_and_a_sha_without_its_version() -> None:
    sha = "3d3c42e5aac5ba805825da76410c181273ba90b1"
    text = f"""
      - uses: actions/checkout@v7
      - uses: aquasecurity/trivy-action@master
      - uses: actions/setup-node@{sha}
      - uses: actions/setup-python@{sha[:12]} # v7.0.0
      - uses: actions/checkout@{sha} # v7.0.1
      - uses: ./.github/actions/local
    """
    assert unpinned_actions(text) == [
        "- uses: actions/checkout@v7",
        "- uses: aquasecurity/trivy-action@master",
        f"- uses: actions/setup-node@{sha}",
        f"- uses: actions/setup-python@{sha[:12]} # v7.0.0",
    ]


@pytest.mark.parametrize("path", _workflow_files(), ids=lambda p: p.name)
def test_every_job_states_its_permissions_and_the_default_grants_none(path: Path) -> None:
    assert jobs_without_permissions(_parse(path.read_text())) == []


def test_the_permission_check_finds_a_job_without_permissions() -> None:
    workflow = _parse("on: push\njobs:\n  a:\n    permissions: {}\n  b:\n    runs-on: x\n")
    assert jobs_without_permissions(workflow) == ["<workflow default>", "b"]


def test_only_the_jobs_that_talk_to_aws_may_request_an_oidc_token() -> None:
    for name in ("ci.yml", "deploy.yml"):
        for job_name, job in _load(name)["jobs"].items():
            permissions = job["permissions"]
            assert set(permissions) <= {"contents", "id-token"}, (name, job_name)
            assert permissions.get("contents") == "read", (name, job_name)
            if permissions.get("id-token") == "write":
                assert (name, job_name) in {("deploy.yml", "diff"), ("deploy.yml", "deploy")}


def _zizmor(target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            _tool("zizmor"),
            "--offline",
            "--persona",
            "auditor",
            "--config",
            str(GITHUB / "zizmor.yml"),
            "--format",
            "json",
            str(target),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_zizmor_finds_nothing_in_the_workflows() -> None:
    result = _zizmor(GITHUB)
    findings = json.loads(result.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=1)[:4000]
    assert result.returncode == 0, result.stderr[-2000:]


def test_zizmor_refuses_an_action_of_github_pinned_by_tag(tmp_path: Path) -> None:
    # Its default policy lets actions/* float on a tag; zizmor.yml asks for a SHA everywhere.
    ci = (WORKFLOWS / "ci.yml").read_text()
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "ci.yml").write_text(
        re.sub(r"actions/checkout@[0-9a-f]{40} # v[\d.]+", "actions/checkout@v7", ci)
    )
    result = _zizmor(tmp_path)
    audits = {finding["ident"] for finding in json.loads(result.stdout)}
    assert "unpinned-uses" in audits


@pytest.mark.parametrize(
    ("pattern", "schema"),
    [("workflows/*.yml", "vendor.github-workflows"), ("dependabot.yml", "vendor.dependabot")],
)
def test_files_match_the_schemas_github_reads_them_with(pattern: str, schema: str) -> None:
    files = [str(p) for p in sorted(GITHUB.glob(pattern))]
    assert files
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", schema, *files],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _shellcheck(script: str, tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.sh"
    # GitHub runs `run:` with `bash -e -o pipefail`; expressions are substituted before.
    body = re.sub(r"\$\{\{.*?\}\}", "expr", script)
    path.write_text(f"#!/usr/bin/env bash\nset -eo pipefail\n{body}\n")
    result = subprocess.run(
        [_tool("shellcheck"), "--shell=bash", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return result.stdout


def test_every_run_step_passes_shellcheck(tmp_path: Path) -> None:
    problems = []
    for path in _workflow_files():
        workflow = _parse(path.read_text())
        for job_name, job in workflow["jobs"].items():
            for index, step in enumerate(job.get("steps", [])):
                if "run" in step:
                    name = f"{path.stem}-{job_name}-{index}"
                    problems.append(_shellcheck(step["run"], tmp_path, name))
    assert "".join(problems) == ""


def test_shellcheck_reports_a_bad_run_step(tmp_path: Path) -> None:
    assert "SC2086" in _shellcheck("for x in $(ls); do rm $x; done", tmp_path, "bad")


@pytest.mark.parametrize(
    "script", ["scripts/compose-smoke.sh", "infra/scripts/cdk.sh", "infra/scripts/run-migration.sh"]
)
def test_the_scripts_the_workflows_run_pass_shellcheck(script: str) -> None:
    result = subprocess.run(
        [_tool("shellcheck"), str(REPO / script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout


def test_dependabot_moves_actions_the_lock_the_base_images_and_the_cdk_cli() -> None:
    config = yaml.safe_load((GITHUB / "dependabot.yml").read_text())
    updates = {(u["package-ecosystem"], u["directory"]) for u in config["updates"]}
    assert updates >= {
        ("github-actions", "/"),
        ("uv", "/"),
        ("docker", "/"),
        ("docker-compose", "/"),
        ("npm", "/infra"),
    }
    assert (REPO / "uv.lock").is_file()
    assert (REPO / "Dockerfile").is_file()
    assert (REPO / "infra" / "package-lock.json").is_file()


def test_setup_uv_installs_the_same_uv_everywhere() -> None:
    versions = {
        step["with"]["version"]
        for name in ("ci.yml", "deploy.yml")
        for job in _load(name)["jobs"].values()
        for step in job.get("steps", [])
        if step.get("uses", "").startswith("astral-sh/setup-uv@")
    }
    assert len(versions) == 1


def test_the_cdk_cli_is_pinned_and_locked_and_installed_from_the_lock() -> None:
    package = json.loads((REPO / "infra" / "package.json").read_text())
    version = package["devDependencies"]["aws-cdk"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "an exact version, no range"
    lock = json.loads((REPO / "infra" / "package-lock.json").read_text())
    locked = lock["packages"]["node_modules/aws-cdk"]
    assert locked["version"] == version
    assert locked["integrity"].startswith("sha512-")
    deploy = _load("deploy.yml")
    for job in ("diff", "deploy"):
        assert "npm ci --prefix infra" in _runs(deploy, job)
    for path in _workflow_files():
        assert "npm install" not in path.read_text()
    assert '"$infra/node_modules/.bin/cdk"' in (REPO / "infra/scripts/cdk.sh").read_text()


# --- CI proves the images ------------------------------------------------------------------


def test_ci_runs_make_test_on_pull_requests_and_for_deploy() -> None:
    ci = _load("ci.yml")
    assert "pull_request" in ci["on"]
    assert ci["on"]["workflow_call"]["inputs"]["export-images"]["default"] is False
    assert "make test" in _runs(ci, "test")


def test_ci_bakes_every_image_with_an_sbom_and_provenance_into_its_own_registry() -> None:
    ci = _load("ci.yml")
    job = ci["jobs"]["images"]
    assert job["services"]["registry"]["image"].startswith("registry:")
    assert re.search(r"@sha256:[0-9a-f]{64}$", job["services"]["registry"]["image"])
    bake = next(s["run"] for s in job["steps"] if "docker buildx bake" in s.get("run", ""))
    for flag in ("bake all ", "--push", "--sbom=true", "--provenance=mode=max", "--metadata-file"):
        assert flag in bake
    assert 'REGISTRY="$LOCAL_REGISTRY"' in bake
    assert job["env"]["LOCAL_REGISTRY"].startswith("localhost:")
    # The exported digests are the services' (the cli image only serves compose).
    assert job["outputs"]["digests"] == "${{ steps.digests.outputs.json }}"
    assert ci["on"]["workflow_call"]["outputs"]["digests"]["value"] == (
        "${{ jobs.images.outputs.digests }}"
    )
    assert "del(.cli)" in _runs(ci, "images")


def test_ci_starts_each_service_image_without_settings_and_expects_a_named_refusal() -> None:
    step = next(
        s for s in _steps(_load("ci.yml"), "images") if "refuses to start" in s.get("name", "")
    )
    pairs = re.search(r"for service in (.+); do", step["run"])
    assert pairs is not None
    assert dict(p.split(":") for p in pairs.group(1).split()) == {
        "ingest-api": "INGEST_",
        "stream-writer": "WRITER_",
        "db-loader": "LOADER_",
        "dashboard": "DASHBOARD_",
    }
    assert "--network none" in step["run"]
    assert '"$status" -ne 2' in step["run"]


def test_ci_runs_the_compose_stack_from_the_baked_images_and_replays_rows() -> None:
    steps = _steps(_load("ci.yml"), "images")
    names = [s.get("name", "") for s in steps]
    smoke = next(s for s in steps if s.get("run") == "scripts/compose-smoke.sh")
    assert int(smoke["env"]["ROWS"]) >= 200
    pull = next(s for s in steps if "docker tag" in s.get("run", ""))
    assert "cardstream/${name}:dev" in pull["run"]  # the names compose.yaml runs
    assert names.index(pull["name"]) < names.index(smoke["name"])
    teardown = next(s for s in steps if "docker compose down" in s.get("run", ""))
    assert teardown["if"] == "always()"


def test_ci_scans_every_shipped_image_with_the_repository_policy() -> None:
    scans = _uses(_load("ci.yml"), "images", "aquasecurity/trivy-action")
    assert {s["with"]["image-ref"] for s in scans} == {f"cardstream/{n}:dev" for n in SERVICES}
    assert {s["with"]["trivy-config"] for s in scans} == {"trivy.yaml"}


def test_ci_exports_the_proven_images_with_their_digests_only_when_asked() -> None:
    steps = _steps(_load("ci.yml"), "images")
    export = next(s for s in steps if "skopeo copy" in s.get("run", ""))
    assert export["if"] == "inputs.export-images"
    assert "--preserve-digests" in export["run"]
    assert "--all" in export["run"]  # the index with its SBOM and provenance
    upload = _uses(_load("ci.yml"), "images", "actions/upload-artifact")
    assert [u["if"] for u in upload] == ["inputs.export-images"]
    assert upload[0]["with"]["name"] == "images"
    names = [s.get("name") or s.get("uses") for s in steps]
    scans = [i for i, s in enumerate(steps) if "trivy-action" in s.get("uses", "")]
    assert max(scans) < names.index(export["name"])


# --- deploy: reviewed diff, approval, digests ----------------------------------------------


def test_deploy_runs_on_main_after_ci_with_the_images_exported() -> None:
    deploy = _load("deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    assert deploy["jobs"]["test"]["uses"] == "./.github/workflows/ci.yml"
    assert deploy["jobs"]["test"]["with"] == {"export-images": True}
    assert deploy["jobs"]["diff"]["needs"] == "test"
    assert deploy["jobs"]["deploy"]["needs"] == ["test", "diff"]
    for job in ("diff", "deploy"):
        assert deploy["jobs"][job]["if"] == "github.ref == 'refs/heads/main'"


def test_a_diff_is_shown_before_the_environment_gate_and_changes_happen_only_after() -> None:
    deploy = _load("deploy.yml")
    diff, gated = deploy["jobs"]["diff"], deploy["jobs"]["deploy"]
    assert "environment" not in diff
    assert gated["environment"] == "${{ vars.CARDSTREAM_ENVIRONMENT || 'dev' }}"
    diff_run = _runs(deploy, "diff")
    assert "infra/scripts/cdk.sh diff --no-change-set" in diff_run
    assert "GITHUB_STEP_SUMMARY" in diff_run
    assert "deploy" not in re.sub(r"cardstream-deploy|deploy\.yml", "", diff_run)
    assert "--require-approval never" in _runs(deploy, "deploy")


def test_each_job_assumes_its_own_role_by_oidc_and_no_key_is_stored() -> None:
    text = (WORKFLOWS / "deploy.yml").read_text()
    deploy = _load("deploy.yml")
    for job, variable in (("diff", "AWS_DIFF_ROLE_ARN"), ("deploy", "AWS_DEPLOY_ROLE_ARN")):
        configure = _uses(deploy, job, "aws-actions/configure-aws-credentials")
        assert len(configure) == 1
        assert configure[0]["with"]["role-to-assume"] == f"${{{{ vars.{variable} }}}}"
    for forbidden in ("aws-access-key-id", "aws-secret-access-key", "AWS_SECRET_ACCESS_KEY"):
        assert forbidden not in text
    # The keyring check reads version ids only, never the PAN key itself.
    assert "get-secret-value" not in text
    assert "secrets." not in text


def test_images_are_pushed_once_by_digest_and_deployed_by_digest() -> None:
    deploy = _load("deploy.yml")
    for job in ("diff", "deploy"):
        assert deploy["jobs"][job]["env"]["IMAGE_DIGESTS"] == "${{ needs.test.outputs.digests }}"
    push = next(s for s in _steps(deploy, "deploy") if "skopeo copy" in s.get("run", ""))
    assert "--preserve-digests" in push["run"]
    # Each environment has its own repositories, cardstream-<env>/<service>.
    assert '"docker://${REGISTRY}/${PREFIX}/${name}@${digest}"' in push["run"]
    assert "aws ecr describe-images" in push["run"]
    assert '"imageDigest=${digest}"' in push["run"]
    assert "continue" in push["run"]  # what exists is skipped: a re-run pushes nothing again
    download = _uses(deploy, "deploy", "actions/download-artifact")
    assert download[0]["with"]["name"] == "images"
    cdk = (REPO / "infra/scripts/cdk.sh").read_text()
    assert '-c "cardstream.image_digests=${IMAGE_DIGESTS}"' in cdk
    for path in [*_workflow_files(), REPO / "infra/scripts/cdk.sh"]:
        assert "image_tag" not in path.read_text()


def test_stacks_deploy_in_dependency_order_with_images_pushed_between(synth: Any) -> None:
    deploy = _load("deploy.yml")
    order: list[str] = []
    for step in _steps(deploy, "deploy"):
        run = step.get("run", "")
        if "cdk.sh deploy" in run:
            order += re.findall(r'"\$\{PREFIX\}-(\w+)"', run)
        if "skopeo copy" in run:
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
    assert deploy["jobs"]["deploy"]["env"]["PREFIX"] == (
        "cardstream-${{ vars.CARDSTREAM_ENVIRONMENT || 'dev' }}"
    )
