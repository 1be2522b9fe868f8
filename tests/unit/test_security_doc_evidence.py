"""docs/security.md names the tests that show each control: every one it names exists.

A control whose evidence is a test that was renamed or removed is a control nobody checks;
an assessor following the document would find nothing there. Each cited file must exist and
each cited test name (``path::name``, or ``::name`` after a path on the same line) must be
defined in that file, as a function or a parametrized one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "security.md"

# A code span naming a file of the repository's tests or benchmarks, maybe with a test.
_CITATION = re.compile(r"`((?:infra/)?(?:tests|bench)/[\w/.\-]+\.py)?(?:::(\w+))?`")


def cited_tests(text: str) -> list[tuple[int, str, str | None]]:
    """(line, file, test name or None) of every test file and test ``text`` cites; a bare
    ``::name`` belongs to the file cited last on its line."""
    found: list[tuple[int, str, str | None]] = []
    for number, line in enumerate(text.splitlines(), 1):
        current: str | None = None
        for match in _CITATION.finditer(line):
            path, name = match.groups()
            if path is None and name is None:
                continue
            if path is not None:
                current = path
            assert current is not None, f"docs/security.md:{number}: ::{name} names no file"
            found.append((number, current, name))
    return found


def _defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def missing(root: Path, citations: list[tuple[int, str, str | None]]) -> list[str]:
    """``line: citation`` of every cited file or test that does not exist under ``root``."""
    wrong: list[str] = []
    for number, path, name in citations:
        target = root / path
        if not target.is_file():
            wrong.append(f"{number}: {path}")
        elif name is not None and name not in _defined_tests(target):
            wrong.append(f"{number}: {path}::{name}")
    return wrong


def test_every_test_the_security_document_cites_exists() -> None:
    citations = cited_tests(DOC.read_text(encoding="utf-8"))
    assert len(citations) > 20
    assert missing(REPO, citations) == []


def test_a_renamed_test_or_a_missing_file_is_found(tmp_path: Path) -> None:
    # The folders are joined in, so that these examples name no file of the repository.
    tests, bench = "tests", "bench"
    (tmp_path / tests).mkdir()
    (tmp_path / tests / "test_a.py").write_text("def test_one():\n    pass\n")
    text = (
        f"| control | `{tests}/test_a.py::test_one`, `::test_two` |\n"
        f"| other | `{tests}/test_b.py`, `{bench}/x.py` and `cardstream.py` |\n"
    )
    assert missing(tmp_path, cited_tests(text)) == [
        f"1: {tests}/test_a.py::test_two",
        f"2: {tests}/test_b.py",
        f"2: {bench}/x.py",
    ]
