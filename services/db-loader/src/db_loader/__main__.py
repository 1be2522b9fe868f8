"""``python -m db_loader``: run one loader until SIGTERM or SIGINT.

On a signal the loader stops receiving, lets the objects in progress commit and delete
their messages (up to LOADER_SHUTDOWN_GRACE_S), and exits 0. Anything not finished is
simply redelivered by SQS to another loader.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import signal
import sys
from typing import Any

from cardstream_shared.json_logging import configure_logging
from cardstream_shared.settings import load_settings
from db_loader.metrics import LoaderMetrics
from db_loader.service import LoaderService, LoadMonitor
from db_loader.settings import LoaderSettings

_RULES_MODULE = "db_loader.rules.monitor"


def _monitors(metrics: LoaderMetrics) -> list[LoadMonitor]:
    """The alert-rules monitor, when that component is installed and switched on."""
    if importlib.util.find_spec(_RULES_MODULE) is None:
        return []
    monitor_module: Any = importlib.import_module(_RULES_MODULE)
    settings_module: Any = importlib.import_module("db_loader.rules.settings")
    monitor = monitor_module.build_monitor(
        load_settings(settings_module.RulesSettings), registry=metrics.registry
    )
    return [monitor] if monitor is not None else []


async def _main(settings: LoaderSettings) -> None:
    metrics = LoaderMetrics()
    service = LoaderService(settings, metrics=metrics, monitors=_monitors(metrics))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await service.run(stop)


def main() -> int:
    """Entry point."""
    settings = load_settings(LoaderSettings)
    configure_logging("db-loader", settings.log_level)
    asyncio.run(_main(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
