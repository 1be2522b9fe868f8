"""Docs and comments cite only what is in the repository, and no issue tracker; the tests
the docs name exist.

A reader of the repository has nothing else: a path to a file that moved or never existed,
a link to another folder's notes, or "issue 8" of a tracker they cannot see sends them
nowhere. Every text file of the repository is read (docs, code and its comments, settings,
scripts), except vendored files and this test, whose examples are wrong on purpose.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]

# A path into the repository: one of its top-level folders, not inside a longer path, a URL
# or a module name.
_TOP_FOLDERS = ("docs", "services", "shared", "monitoring", "infra", "bench", "tests", "src")
_PATH = re.compile(r"(?<![\w./\-@:~$])((?:" + "|".join(_TOP_FOLDERS) + r"|scripts)/[\w./*\-]*)")
# A path relative to the citing file that climbs out of its folder.
_RELATIVE = re.compile(r"(?<![\w.])((?:\.\./)+[\w./*\-]*)")
# A Markdown document named on its own ("see data.md").
_DOCUMENT = re.compile(r"(?<![\w./\-])([\w\-]+\.md)\b")
# A Markdown link's target.
_LINK = re.compile(r"\]\(([^)#\s]+)")
# A reference to an issue or pull request of a tracker.
_ISSUE = re.compile(r"\b(?:issues?|pull request|PR)\s*#?\s*\d+|\bGH-\d+", re.IGNORECASE)

# Not ours to edit (vendored front-end files and their licences) or not text.
_NOT_READ = re.compile(r"(^|/)(LICENSE|NOTICE)[^/]*$|\.(png|js|css|lock)$|/vendor/")


def repository_files() -> list[str]:
    """Tracked files and new ones not ignored, relative to the repository."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    own = Path(__file__).resolve().relative_to(REPO).as_posix()
    return sorted(
        name
        for name in set(listed)
        if name != own and not _NOT_READ.search(name) and (REPO / name).is_file()
    )


def citations(text: str, name: str) -> Iterator[tuple[int, str, str]]:
    """(line number, kind, citation) of every path, relative reference, document and issue
    in ``text``, each citation once a line."""
    for number, line in enumerate(text.splitlines(), 1):
        found = [("path", m.group(1).rstrip(".,;:")) for m in _PATH.finditer(line)]
        if name.endswith(".md"):
            found += [
                ("relative", m.group(1))
                for m in _LINK.finditer(line)
                if not re.match(r"[a-z]+:", m.group(1))
            ]
        found += [("relative", m.group(1).rstrip(".,;:")) for m in _RELATIVE.finditer(line)]
        found += [("document", m.group(1)) for m in _DOCUMENT.finditer(line)]
        found += [("issue", m.group(0)) for m in _ISSUE.finditer(line)]
        seen: set[str] = set()
        for kind, cited in found:
            if cited not in seen:
                seen.add(cited)
                yield number, kind, cited


def _found(root: Path, reference: str) -> bool:
    target = root / reference
    return bool(glob.glob(str(target))) if "*" in reference else target.exists()


def _in_repository(root: Path, name: str, kind: str, cited: str) -> str | None:
    """The repository path ``cited`` names, if it names one. A path is the repository's, or
    relative to the citing file's folder (a member's pyproject.toml, a script naming its
    neighbours); ``*`` is a glob. A relative reference (``../x``, a Markdown link) is
    relative to the citing file's folder and must stay in the repository."""
    folder = (root / name).parent
    if kind == "path":
        for candidate in (cited, (folder / cited).relative_to(root).as_posix()):
            if _found(root, candidate):
                return candidate
        return cited
    resolved = Path(os.path.normpath(folder / cited))
    if not resolved.is_relative_to(root):
        return None
    return resolved.relative_to(root).as_posix()


def _ignored(root: Path, paths: set[str]) -> set[str]:
    """The paths git ignores: what a build or a tool makes (``infra/cdk.out``)."""
    # A child of each, so that a folder pattern ("infra/cdk.out/") matches a folder that
    # does not exist yet.
    children = {path: f"{path.rstrip('/')}/_" for path in paths}
    result = subprocess.run(
        ["git", "check-ignore", "--stdin"],
        cwd=root,
        input="\n".join(children.values()),
        capture_output=True,
        text=True,
        check=False,
    )
    ignored = set(result.stdout.splitlines())
    return {path for path, child in children.items() if child in ignored}


def wrong_citations(root: Path, files: list[str]) -> list[str]:
    """``file:line: kind citation`` for every citation of something not in the repository
    at ``root`` (``files`` are its files)."""
    documents = {Path(name).name for name in files}
    wrong: list[tuple[str, int, str, str]] = []
    missing: dict[tuple[str, int, str, str], str] = {}
    for name in files:
        try:
            text = (root / name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, kind, cited in citations(text, name):
            where = (name, number, kind, cited)
            if kind == "issue" or (kind == "document" and cited not in documents):
                wrong.append(where)
            elif kind in ("path", "relative"):
                path = _in_repository(root, name, kind, cited)
                if path is None:
                    wrong.append(where)
                elif not _found(root, path):
                    missing[where] = path
    generated = _ignored(root, set(missing.values()))
    wrong += [where for where, path in missing.items() if path not in generated]
    return [f"{name}:{number}: {kind} {cited}" for name, number, kind, cited in sorted(wrong)]


_TEST_FILE = re.compile(r"(tests/[\w/]+\.py)")
_TEST_NAME = re.compile(r"`(test_\w+)`")


def missing_tests(root: Path, documents: list[str]) -> list[str]:
    """``document:line: test`` for every test a document names (in backquotes) that no test
    file named on the same line (a table row) defines."""
    missing = []
    for name in documents:
        lines = (root / name).read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            sources = "".join(
                (root / path).read_text(encoding="utf-8")
                for path in _TEST_FILE.findall(line)
                if (root / path).is_file()
            )
            for test in _TEST_NAME.findall(line):
                if not re.search(rf"\bdef {test}\b", sources):
                    missing.append(f"{name}:{number}: {test}")
    return missing


def test_docs_name_only_tests_that_exist() -> None:
    documents = [name for name in repository_files() if name.endswith(".md")]
    assert missing_tests(REPO, documents) == []


def test_a_renamed_test_is_found(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/test_x.py").write_text("def test_kept() -> None: ...\n")
    (tmp_path / "matrix.md").write_text(
        "| F1 | `tests/test_x.py`: `test_kept`, `test_renamed` |\n| F2 | `test_nowhere` |\n"
    )
    assert missing_tests(tmp_path, ["matrix.md"]) == [
        "matrix.md:1: test_renamed",
        "matrix.md:2: test_nowhere",
    ]


def test_docs_and_comments_cite_only_what_is_in_the_repository() -> None:
    assert wrong_citations(REPO, repository_files()) == []


def test_a_missing_path_document_or_link_and_an_issue_number_are_found(tmp_path: Path) -> None:
    files = {
        "docs/reliability.md": "F1 to F11; figures in [benchmarks](nowhere.md#ingest)\n",
        "docs/guide.md": "[matrix](reliability.md), [notes](../../shared/docs/data.md)\n",
        "services/api/pyproject.toml": 'packages = ["src/api"]\n',
        "services/api/src/api/x.py": (
            "# docs/reliability.md F10, services/api/src/api/x.py, services/*/src\n"
            "# bounds in docs/nowhere.md and in nowhere.md\n"
            "# see https://example.com/docs/nowhere.md, api/src/nowhere, s3://b/raw/dt=.../x\n"
            "# the team's notes: ../shared/docs/data.md\n"
            "## Local stack check (issue 8 acceptance); fixed in Issue #3\n"
        ),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "services/api/src/api/__init__.py").write_text("")
    assert wrong_citations(tmp_path, sorted(files)) == [
        "docs/guide.md:1: relative ../../shared/docs/data.md",
        "docs/reliability.md:1: relative nowhere.md",
        "services/api/src/api/x.py:2: document nowhere.md",
        "services/api/src/api/x.py:2: path docs/nowhere.md",
        "services/api/src/api/x.py:4: relative ../shared/docs/data.md",
        "services/api/src/api/x.py:5: issue Issue #3",
        "services/api/src/api/x.py:5: issue issue 8",
    ]
