"""The loader's prepare workers end with the loader, however the loader ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

pytestmark = pytest.mark.functional

# A stand-in loader process: the pool the service builds, one task run (workers start on
# demand), then it waits to be killed.
_LOADER = textwrap.dedent(
    """
    import os, sys, time
    from db_loader.prepare_workers import prepare_pool

    pool = prepare_pool(2)
    futures = [pool.submit(os.getpid) for _ in range(4)]
    [future.result() for future in futures]
    print("ready", flush=True)
    time.sleep(600)
    """
)


def test_prepare_workers_exit_when_the_loader_is_killed() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _LOADER], stdout=subprocess.PIPE, env=dict(os.environ)
    ) as loader:
        try:
            assert loader.stdout is not None
            assert loader.stdout.readline().strip() == b"ready"
            descendants = psutil.Process(loader.pid).children(recursive=True)
            assert descendants, "the pool started no worker"
            os.kill(loader.pid, signal.SIGKILL)
            loader.wait(30)
            _, alive = psutil.wait_procs(descendants, timeout=60)
            for process in alive:
                process.kill()
            assert [p.pid for p in alive] == [], "prepare workers outlived the killed loader"
        finally:
            if loader.poll() is None:
                loader.kill()
