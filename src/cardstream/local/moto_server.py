"""moto in server mode: one thread runs moto, connections stay open (HTTP/1.1 keep-alive).

moto's own ``moto_server`` command always serves with threads. Its Kinesis ``put_record`` is
documented in its source as not safe for concurrency, and with a threaded server it loses
acknowledged records (measured: 49 of 20,000 with four concurrent producers; none when
single-threaded), so the local stack runs it through this entry point instead.

The server is waitress, not werkzeug's development server (what ``moto_server`` uses):
- werkzeug answers every request with ``Connection: close``, so each AWS call paid a new
  TCP connection; in ingest-api's benchmark that was about a tenth of the API's CPU, a cost
  no client pays against AWS, where connections are kept alive.
- waitress reads and writes every connection in its I/O thread and hands only complete
  requests to its worker threads. With one worker, moto still runs one request at a time,
  and a client that stops in the middle of a request (a process paused with SIGSTOP, as the
  stream-writer fault tests do) holds nobody else: its half request simply waits in the I/O
  thread. Idle connections are closed after ``IDLE_CONNECTION_TIMEOUT_S``.

Kinesis keeps its records in a store whose cost does not grow with the stream's length
(``moto_kinesis_store``) and reshards as on AWS (``moto_resharding``); moto's per-request
service look-up is remembered and its registry of every model object is off
(``moto_dispatch``).

Two differences from werkzeug: waitress drops request headers with an underscore in their
name (moto's handler keeps them for S3 user metadata; cardstream's metadata keys use
dashes), and it capitalizes every response header name. S3 writes user-metadata names in
lower case and botocore keeps a name's case in ``Metadata`` keys (``head_object`` would say
``Record-Count`` instead of ``record-count``), so those names are written in lower case again.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
from types import FrameType
from typing import Final

from waitress.channel import HTTPChannel
from waitress.task import WSGITask

# Longer than the idle timeout of the clients' own pools (aiobotocore ~12 s, urllib3 checks
# before reuse), so that a client rarely reuses a connection the server is closing.
IDLE_CONNECTION_TIMEOUT_S: Final = 120
# Every service process, test and benchmark load generator shares this one server; waitress
# stops accepting connections beyond the limit (its default, 100, is reached by a test run).
CONNECTION_LIMIT: Final = 1000


# An S3 user-metadata header as waitress writes it, at the start of a header line.
_METADATA_HEADER_NAME: Final = re.compile(rb"(?im)^x-amz-meta-[^:\r\n]*:")


class _MetadataCaseTask(WSGITask):
    def build_response_header(self) -> bytes:
        header = super().build_response_header()
        return _METADATA_HEADER_NAME.sub(lambda name: name.group(0).lower(), header)


class _MotoChannel(HTTPChannel):
    task_class = _MetadataCaseTask


def _stop(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    """``python -m cardstream.local.moto_server --host 127.0.0.1 --port N``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.host, args.port)


def serve(host: str, port: int, *, baseline: bool = False) -> None:
    """Serve moto on ``host:port`` until SIGTERM or SIGINT.

    ``baseline=True`` keeps moto's own Kinesis record store and request path (resharding
    patched): the emulator as it was, which ``bench/emulator_bench.py`` measures beside it.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from waitress.server import BaseWSGIServer, create_server

    from cardstream.local import moto_dispatch, moto_kinesis_store, moto_resharding

    if not baseline:
        moto_kinesis_store.install()
        moto_dispatch.install()
    moto_resharding.install()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # With one worker, requests queue whenever clients are concurrent: that is the design,
    # not a warning for every request.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server = create_server(
        (DomainDispatcherApplication if baseline else moto_dispatch.Dispatcher)(create_backend_app),
        host=host,
        port=port,
        threads=1,
        connection_limit=CONNECTION_LIMIT,
        channel_timeout=IDLE_CONNECTION_TIMEOUT_S,
        # poll() instead of select(): no limit at 1,024 file descriptors.
        asyncore_use_poll=True,
        ident="moto",
    )
    # One address, one listening server; it reads channel_class for each connection it
    # accepts (waitress's extension point).
    assert isinstance(server, BaseWSGIServer)
    server.channel_class = _MotoChannel
    server.print_listen("moto serving on http://{}:{}")
    try:
        server.run()
    finally:
        server.close()


if __name__ == "__main__":
    main()
