"""F12, the chaos soak's two-minute version: ``bench/soak.py`` as a user runs it, with one
fault of each kind, keeps every promise it checks (the script's own exit status says which
broke; this test also holds it to having injected every kind)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

# The kinds F12 names, stated here rather than read from the script: a kind the script
# dropped must fail this test.
FAULT_KINDS = {
    "writer-kill",
    "writer-pause",
    "loader-kill",
    "postgres-restart",
    "api-kill",
    "kinesis-throttle",
    "s3-errors",
    "reshard",
    "poison",
}
# A fault row of the table: seconds into the load, kind, then target and result.
_FAULT_ROW = re.compile(r"^\s+\d+\s+([a-z0-9-]+)\s+(.*)$", re.MULTILINE)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_f12_two_minute_chaos_soak_keeps_every_promise(repo_root: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(repo_root / "bench" / "soak.py"),
            *("--minutes", "2", "--rate", "200", "--fault-every", "11", "--seed", "7"),
        ],
        capture_output=True,
        text=True,
        timeout=1700,
        check=False,
    )
    report = result.stdout
    print(report)  # the soak's tables, for whoever reads a passing run's output (-rP)
    assert result.returncode == 0, report + result.stderr[-4000:]
    faults = report.split("\nfaults injected\n", 1)[1].split("\nprocesses ", 1)[0]
    injected = {
        kind for kind, rest in _FAULT_ROW.findall(faults) if not rest.strip().startswith("skipped")
    }
    assert injected >= FAULT_KINDS, faults
