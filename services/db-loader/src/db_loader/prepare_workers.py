"""The process pool that prepares objects (decode, validate, build rows) off the event loop.

Its workers end with the loader. A worker of ``ProcessPoolExecutor`` waits on a queue whose
writing end it holds itself, so when the loader dies without shutting the pool down (SIGKILL,
an out-of-memory kill) no end-of-file ever reaches it: it would live on, reparented, holding
its memory. Each worker therefore watches its parent's sentinel (a pipe that the operating
system closes when the parent exits, however it exits) and leaves when it fires.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import wait


def prepare_pool(processes: int) -> ProcessPoolExecutor:
    """A pool of ``processes`` workers that exit when the loader process does."""
    # spawn, not fork: the loader process has threads (asyncio, botocore).
    return ProcessPoolExecutor(
        processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_exit_with_parent,
    )


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    threading.Thread(
        target=_wait_then_exit, args=(parent.sentinel,), name="exit-with-parent", daemon=True
    ).start()


def _wait_then_exit(sentinel: int) -> None:
    wait([sentinel])
    # os._exit, not sys.exit: this is not the main thread, and the task a worker may be
    # running belongs to a loader that is gone.
    os._exit(0)
