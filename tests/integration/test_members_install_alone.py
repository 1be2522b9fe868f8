"""Each workspace member installs and runs alone, in the environment its image builds.

Every other check runs in the root ``.venv``, which holds every member, so a member that
imports a package it does not declare passes there and fails in its image. Here, for each
member of the workspace (read from its member list, so a new member is covered as it
lands), the build stage of the Dockerfile is replayed into a fresh directory: its ``ENV``,
``WORKDIR``, ``COPY`` (the build context filtered by ``.dockerignore``) and ``uv sync``
steps, with ``PACKAGE`` set to the member. The sources are then removed, as the runtime
stage keeps only the environment, and in that environment alone:

- every module of the member imports,
- every package any of its modules imports, even inside a function, is found,
- each entry point a container or task runs (``python -m <package>``, and the modules run as
  programs) refuses a missing setting by name, with exit status 2.
"""

from __future__ import annotations

import ast
import glob
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cardstream_shared.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[2]

# Modules that only run inside the tool that loads them; their imports are still checked.
RUN_ONLY_BY_ALEMBIC = frozenset({"db_loader.migrations.env"})

# Modules run as programs (``python -m``) other than a package's ``__main__``, and the
# variable each must name when it starts with no setting at all.
PROGRAMS = {
    # The migration task: ECS injects the RDS master secret's fields as libpq variables.
    "db_loader.migrate": "PGHOST",
}


@dataclass(frozen=True)
class Member:
    """One workspace member: its distribution name, folder and top-level packages."""

    name: str
    path: Path
    packages: tuple[str, ...]

    @property
    def package_dirs(self) -> list[Path]:
        return [self.path / "src" / package for package in self.packages]

    def modules(self) -> Iterator[tuple[str, Path]]:
        """Every module of the member, as (dotted name, file)."""
        for package_dir in self.package_dirs:
            for file in sorted(package_dir.rglob("*.py")):
                parts = file.relative_to(package_dir.parent).with_suffix("").parts
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                yield ".".join(parts), file


def _member(path: Path) -> Member:
    project = tomllib.loads((path / "pyproject.toml").read_text())
    wheel = project.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {})
    packages = wheel.get("wheel", {}).get("packages", [])
    assert packages, f"{path}: name the member's packages ([tool.hatch.build.targets.wheel])"
    return Member(
        name=project["project"]["name"],
        path=path,
        packages=tuple(Path(package).name for package in packages),
    )


def workspace_members() -> list[Member]:
    """The root project and every member its workspace lists."""
    workspace = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    excluded = {
        Path(found)
        for pattern in workspace.get("exclude", [])
        for found in glob.glob(str(REPO / pattern))
    }
    paths = [REPO] + [
        Path(found)
        for pattern in workspace["members"]
        for found in sorted(glob.glob(str(REPO / pattern)))
        if Path(found) not in excluded and (Path(found) / "pyproject.toml").exists()
    ]
    return [_member(path) for path in paths]


MEMBERS = {member.name: member for member in workspace_members()}
# The root project is the developer CLI (and the compose job image); services run alone.
SERVICE_MEMBERS = [member for member in MEMBERS.values() if member.path != REPO]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(node: ast.AST) -> Iterator[str]:
    """Top-level names of absolute imports, anywhere but under ``if TYPE_CHECKING:``."""
    children: list[ast.AST] = list(ast.iter_child_nodes(node))
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        children = list(node.orelse)
    elif isinstance(node, ast.Import):
        yield from (alias.name.split(".")[0] for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        yield node.module.split(".")[0]
    for child in children:
        yield from _runtime_imports(child)


def imported_names(member: Member) -> set[str]:
    """Every top-level package the member's modules import at run time."""
    names: set[str] = set()
    for _, file in member.modules():
        names.update(_runtime_imports(ast.parse(file.read_text(), str(file))))
    return names - set(sys.stdlib_module_names) - {"__future__"}


def _runs_as_program(file: Path) -> bool:
    return file.name != "__main__.py" and bool(
        re.search(r"^if __name__ == \"__main__\":$", file.read_text(), re.MULTILINE)
    )


def entry_points() -> list[tuple[str, str]]:
    """(member, module) of every module a service image or task runs with ``python -m``."""
    found = []
    for member in SERVICE_MEMBERS:
        for module, file in member.modules():
            if file.name == "__main__.py" and module.count(".") == 1:
                found.append((member.name, module.rpartition(".")[0]))
            elif _runs_as_program(file):
                found.append((member.name, module))
    return found


# --- The Dockerfile's build stage, replayed ------------------------------------------------


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (keyword.upper(), rest.strip())
        for keyword, _, rest in (line.strip().partition(" ") for line in joined.splitlines())
        if keyword
    ]


def build_stage(dockerfile: str) -> list[tuple[str, str]]:
    """Instructions of the stage whose environment the last (runtime) stage copies."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, args in _instructions(dockerfile):
        if keyword == "FROM":
            current = []
            name = args.split()[-1] if " AS " in args.upper() else str(len(stages))
            stages[name] = current
        else:
            current.append((keyword, args))
    copied = [
        match.group(1)
        for keyword, args in current
        if keyword == "COPY" and (match := re.match(r"--from=(\S+)", args))
    ]
    assert len(copied) == 1, f"the runtime stage copies from one stage, not {copied}"
    return stages[copied[0]]


def _dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    """(exception, pattern) of each .dockerignore line, with Docker's matching rules."""
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                token, re.escape(token)
            )
        rules.append((exception, re.compile(regex)))
    return rules


def build_context() -> list[Path]:
    """Files of the build context: the repository minus what .dockerignore leaves out."""
    rules = _dockerignore()

    def ignored(relative: str) -> bool:
        # A pattern also excludes everything below a folder it matches.
        prefixes = [relative[: m.start()] for m in re.finditer("/", relative)] + [relative]
        result = False
        for exception, regex in rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                result = not exception
        return result

    files = []
    for folder, dirs, names in os.walk(REPO):
        base = Path(folder).relative_to(REPO)
        dirs[:] = [d for d in dirs if not ignored((base / d).as_posix())]
        files += [base / n for n in names if not ignored((base / n).as_posix())]
    return files


_OTHER_ENVIRONMENT = frozenset(
    {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT"}
)


def _in_root(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def build_environment(member: Member, root: Path) -> Path:
    """Replay the build stage for ``member`` with ``root`` as the image's file system;
    returns the environment the runtime stage copies."""
    stage = build_stage((REPO / "Dockerfile").read_text())
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    # This machine's environment (network, certificates, uv cache), less what would point
    # uv or Python at another environment; the Dockerfile's own ENV is added below.
    env = {k: v for k, v in os.environ.items() if k not in _OTHER_ENVIRONMENT}
    env["PATH"] = f"{Path(uv).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    # The interpreter of this run stands in for the image's Python.
    env["UV_PYTHON"] = os.path.realpath(sys.executable)
    workdir = root
    for keyword, args in stage:
        if keyword == "ARG":
            name = args.split("=")[0]
            assert name == "PACKAGE", f"unknown build argument {name}: teach this test"
            env[name] = member.name
        elif keyword == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = str(_in_root(root, value)) if value.startswith("/") else value
        elif keyword == "WORKDIR":
            workdir = _in_root(root, args)
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY" and args.startswith("--from="):
            continue  # the uv binary: the one on PATH stands in for it
        elif keyword == "COPY":
            *sources, target = shlex.split(args)
            into_folder = target.endswith("/") or target == "." or len(sources) > 1
            for source in sources:
                _copy(source, workdir / target, into_folder=into_folder)
        elif keyword == "RUN":
            command = re.sub(r"--mount=\S+\s*", "", args)
            assert command.startswith("uv sync "), f"unknown build step {command!r}"
            result = subprocess.run(
                ["sh", "-c", command],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
        else:
            raise AssertionError(f"unknown build instruction {keyword}: teach this test")
    # The runtime stage keeps the environment only, not the sources it was built from.
    shutil.rmtree(workdir)
    return Path(env["UV_PROJECT_ENVIRONMENT"])


def _copy(source: str, target: Path, *, into_folder: bool) -> None:
    """``COPY source target`` from the build context."""
    if source == "." or (REPO / source).is_dir():
        folder = Path(source)
        for file in build_context():
            if source == "." or folder in file.parents:
                destination = target / file.relative_to(folder)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / file, destination)
        return
    destination = target / Path(source).name if into_folder else target
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / source, destination)


# --- The tests ------------------------------------------------------------------------------


class Environments:
    """Each member's image environment, built on first use and kept for the module."""

    def __init__(self, tmp: pytest.TempPathFactory) -> None:
        self._tmp = tmp
        self._built: dict[str, Path] = {}
        self._lock = threading.Lock()

    def python(self, member: str) -> Path:
        with self._lock:
            if member not in self._built:
                root = self._tmp.mktemp(member)
                self._built[member] = build_environment(MEMBERS[member], root)
        return self._built[member] / "bin" / "python"


@pytest.fixture(scope="module")
def environments(tmp_path_factory: pytest.TempPathFactory) -> Environments:
    return Environments(tmp_path_factory)


def _bare_env(python: Path) -> dict[str, str]:
    """What a container starts with: its environment on PATH, no settings of ours."""
    return {
        "PATH": f"{python.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(python.parents[2]),
        "PYTHONDONTWRITEBYTECODE": "1",
        # Importing aws_cdk starts jsii's Node runtime, which warns of Node 20's end of life.
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }


# Run in the member's environment: which modules fail to import (and the package each
# lacks, if that is why), and which imported packages are not there at all.
PROBE = """
import importlib, importlib.util, json, sys
modules, names = json.loads(sys.argv[1]), json.loads(sys.argv[2])
failures = {}
for module in modules:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        failures[module] = ["ModuleNotFoundError", str(error), (error.name or "").split(".")[0]]
    except Exception as error:
        failures[module] = [type(error).__name__, str(error), None]
missing = sorted(name for name in names if importlib.util.find_spec(name) is None)
print(json.dumps({"failures": failures, "missing": missing}))
"""


def _distribution(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_distribution(re.split(r"[\s\[<>=!~;]", item)[0]) for item in requirements}


def declared(member: Member, *, extras: bool) -> set[str]:
    """Distributions the member's pyproject.toml depends on, with its extras' if asked."""
    project = tomllib.loads((member.path / "pyproject.toml").read_text())["project"]
    names = _names(project["dependencies"])
    if extras:
        for requirements in project.get("optional-dependencies", {}).values():
            names |= _names(requirements)
    return names


def providers() -> dict[str, set[str]]:
    """Import name -> the distributions that provide it (workspace members included)."""
    found = {
        name: {_distribution(dist) for dist in dists}
        for name, dists in importlib.metadata.packages_distributions().items()
    }
    for member in MEMBERS.values():
        found.update({package: {_distribution(member.name)} for package in member.packages})
    return found


@pytest.mark.unit
@pytest.mark.parametrize("member", sorted(MEMBERS))
def test_member_declares_every_package_it_imports(member: str) -> None:
    # Declared directly (or in an extra of its own), not reached through another dependency
    # that may drop it.
    provided_by = providers()
    own = set(MEMBERS[member].packages)
    undeclared = {
        name: sorted(provided_by.get(name, {"?"}))
        for name in imported_names(MEMBERS[member]) - own
        if not provided_by.get(name, set()) & declared(MEMBERS[member], extras=True)
    }
    assert undeclared == {}, f"{member} imports packages it does not declare: {undeclared}"


@pytest.mark.parametrize("member", sorted(MEMBERS))
@pytest.mark.integration
@pytest.mark.slow
def test_member_imports_every_module_in_its_image_environment(
    member: str, environments: Environments
) -> None:
    python = environments.python(member)
    modules = [m for m, _ in MEMBERS[member].modules() if m not in RUN_ONLY_BY_ALEMBIC]
    result = subprocess.run(
        [
            str(python),
            "-c",
            PROBE,
            json.dumps(modules),
            json.dumps(sorted(imported_names(MEMBERS[member]))),
        ],
        cwd=python.parents[2],
        env=_bare_env(python),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.splitlines()[-1])
    # A module may need a package only an extra of the member brings (the members that use
    # that module ask for the extra); the environment is built without extras, as alone.
    provided_by = providers()
    optional = declared(MEMBERS[member], extras=True) - declared(MEMBERS[member], extras=False)
    failures = {
        module: failure
        for module, failure in found["failures"].items()
        if not (failure[2] and provided_by.get(failure[2], set()) & optional)
    }
    missing = [name for name in found["missing"] if not provided_by.get(name, set()) & optional]
    assert (failures, missing) == ({}, []), (
        f"{member} does not run alone: modules that fail to import {failures}, "
        f"imported packages not installed {missing}"
    )


def _settings_class(package: str) -> type[ServiceSettings]:
    import importlib

    module = importlib.import_module(f"{package}.settings")
    classes = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"{module.__name__} defines one settings class: {classes}"
    return classes[0]


def _expected_refusal(module: str) -> tuple[dict[str, str], set[str]]:
    """Settings to start ``module`` with, and the variables its refusal must name."""
    if module in PROGRAMS:
        return {}, {PROGRAMS[module]}
    settings = _settings_class(module)
    required = {settings.env_name(n) for n, f in settings.model_fields.items() if f.is_required()}
    if required:
        return {}, required
    # Nothing is required: the service starts on defaults, so one setting is made invalid.
    return {settings.env_name("log_level"): "not-a-level"}, {settings.env_name("log_level")}


@pytest.mark.parametrize(("member", "module"), entry_points())
@pytest.mark.integration
@pytest.mark.slow
def test_entry_point_refuses_a_missing_setting_by_name(
    member: str, module: str, environments: Environments
) -> None:
    python = environments.python(member)
    settings, named = _expected_refusal(module)
    result = subprocess.run(
        [str(python), "-m", module],
        cwd=python.parents[2],
        env=_bare_env(python) | settings,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    for variable in named:
        assert variable in result.stderr, result.stderr[-3000:]


@pytest.mark.unit
def test_every_program_of_a_service_member_has_its_refusal_listed() -> None:
    programs = {
        module
        for member in SERVICE_MEMBERS
        for module, file in member.modules()
        if _runs_as_program(file)
    }
    assert programs == set(PROGRAMS)


@pytest.mark.unit
def test_the_migration_task_command_is_a_module_covered_here() -> None:
    # The CDK migration task runs ``python -m db_loader.migrate`` from the db-loader image.
    assert ("cardstream-db-loader", "db_loader.migrate") in entry_points()
