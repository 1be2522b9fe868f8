"""The local stack's moto server keeps serving when one client stops mid-request.

It is single-threaded (see cardstream.local.moto_server): a client paused with SIGSTOP
halfway through sending a request, as the stream-writer fault test F4 pauses a writer,
used to hold it for every other client until the end of the run.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

pytestmark = pytest.mark.integration


def test_a_client_silent_in_the_middle_of_a_request_does_not_hold_the_server(
    moto_endpoint: str,
) -> None:
    address = urlsplit(moto_endpoint)
    assert address.hostname is not None
    assert address.port is not None
    with socket.create_connection((address.hostname, address.port)) as stalled:
        # Headers begun, never finished: the server is now reading this request.
        stalled.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n")
        kinesis = boto3.client(
            "kinesis",
            endpoint_url=moto_endpoint,
            config=Config(read_timeout=30, connect_timeout=30, retries={"max_attempts": 1}),
        )
        # Answered once the server has dropped the silent connection.
        assert "StreamNames" in kinesis.list_streams()
