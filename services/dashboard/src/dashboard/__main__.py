"""``python -m dashboard``: serve the dashboard until SIGTERM or SIGINT.

uvicorn handles both signals: it stops accepting connections, lets requests in flight finish
(up to DASHBOARD_SHUTDOWN_GRACE_S), then runs the lifespan's exit, which closes the pool.
"""

from __future__ import annotations

import uvicorn

from cardstream_shared.json_logging import configure_logging
from cardstream_shared.self_signed_tls import write_self_signed_certificate
from cardstream_shared.settings import load_settings
from dashboard.app import create_app
from dashboard.settings import DashboardSettings


def main() -> None:
    """Load settings (exit 2 naming a bad variable), configure logging and serve."""
    settings = load_settings(DashboardSettings)
    configure_logging("dashboard", settings.log_level)
    tls = write_self_signed_certificate() if settings.tls_self_signed else None
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        # Our middleware logs requests without their query string, which may hold a token.
        access_log=False,
        log_config=None,
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        ssl_certfile=tls.certfile if tls else None,
        ssl_keyfile=tls.keyfile if tls else None,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
