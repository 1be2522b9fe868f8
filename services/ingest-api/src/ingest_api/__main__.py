"""``python -m ingest_api``: serve the API with uvicorn until SIGTERM or SIGINT.

On SIGTERM uvicorn stops accepting connections, lets in-flight requests finish (up to
``INGEST_SHUTDOWN_GRACE_S``), then runs the lifespan shutdown, which flushes the producer's
coalescing buffer while the Kinesis client is still open.
"""

from __future__ import annotations

import sys

import uvicorn

from cardstream_shared.json_logging import configure_logging
from cardstream_shared.self_signed_tls import write_self_signed_certificate
from cardstream_shared.settings import load_settings
from ingest_api.app import create_app
from ingest_api.settings import IngestSettings

# uvicorn's exit status when the application's startup failed (its CLI uses the same).
STARTUP_FAILED = 3


def main() -> int:
    """Run the service; the exit status is 2 for bad settings, 3 for a failed start-up."""
    settings = load_settings(IngestSettings)
    configure_logging("ingest-api", settings.log_level)
    tls = write_self_signed_certificate() if settings.tls_self_signed else None
    config = uvicorn.Config(
        create_app(settings, freeze_heap=True),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=settings.access_log,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
        ssl_certfile=tls.certfile if tls else None,
        ssl_keyfile=tls.keyfile if tls else None,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else STARTUP_FAILED


if __name__ == "__main__":
    sys.exit(main())
