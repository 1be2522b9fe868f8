"""``python -m db_loader``: run one loader until SIGTERM or SIGINT.

On a signal the loader stops receiving, lets the objects in progress commit and delete
their messages (up to LOADER_SHUTDOWN_GRACE_S), and exits 0. Anything not finished is
simply redelivered by SQS to another loader.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from cardstream_monitoring.monitor import build_monitor
from cardstream_monitoring.settings import RulesSettings
from cardstream_shared.json_logging import configure_logging
from cardstream_shared.settings import load_settings
from db_loader.metrics import LoaderMetrics
from db_loader.service import LoaderService, LoadMonitor
from db_loader.settings import LoaderSettings


def _monitors(metrics: LoaderMetrics) -> list[LoadMonitor]:
    """The alert-rules monitor, unless the rules are switched off."""
    monitor = build_monitor(load_settings(RulesSettings), registry=metrics.registry)
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
