"""moto in server mode, single-threaded.

moto's own ``moto_server`` command always serves with threads. Its Kinesis ``put_record`` is
documented in its source as not safe for concurrency, and with a threaded server it loses
acknowledged records (measured: 49 of 20,000 with four concurrent producers; none when
single-threaded), so the local stack runs it through this entry point instead.

Single-threaded, one client that stops in the middle of sending a request (a process paused
with SIGSTOP, as the stream-writer fault tests do, or a hung one) would hold the server for
everyone: every connection gets a socket timeout, after which the server drops it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType
from typing import Final

# Seconds a connection may stay silent in the middle of a request (or not read its answer)
# before the server drops it and serves the next one.
CLIENT_SOCKET_TIMEOUT_S: Final = 5.0


def _stop(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    """``python -m cardstream.local.moto_server --host 127.0.0.1 --port N``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    class BoundedRequestHandler(MotoRequestHandler):
        # socketserver.StreamRequestHandler.setup applies it to the connection's socket.
        timeout = CLIENT_SOCKET_TIMEOUT_S

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        app,
        threaded=False,
        processes=1,
        use_reloader=False,
        request_handler=BoundedRequestHandler,
    )


if __name__ == "__main__":
    main()
