"""``python -m stream_writer``: one worker process, configured by ``WRITER_*`` variables."""

from __future__ import annotations

import asyncio

from cardstream_shared.json_logging import configure_logging
from cardstream_shared.settings import load_settings
from stream_writer.settings import WriterSettings
from stream_writer.worker import run_worker


def main() -> int:
    """Run the worker; exit status 0 after a clean SIGTERM shutdown, 2 on bad settings."""
    settings = load_settings(WriterSettings)
    configure_logging("stream-writer", settings.log_level)
    asyncio.run(run_worker(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
