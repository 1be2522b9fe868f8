"""The local stack's moto server: one client stopped mid-request holds nobody else,
connections are kept alive, and S3 metadata names read back as S3 writes them.

moto runs one request at a time (see cardstream.local.moto_server): a client paused with
SIGSTOP halfway through sending a request, as the stream-writer fault test F4 pauses a
writer, once held the server for every other client until the end of the run.
"""

from __future__ import annotations

import http.client
import socket
import uuid
from urllib.parse import urlsplit

import boto3
import httpx
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


def test_connections_are_kept_alive(moto_endpoint: str) -> None:
    # Against AWS a client keeps its connections; werkzeug's server closed each one after
    # one answer, which cost ingest-api a TCP connection per PutRecords call.
    address = urlsplit(moto_endpoint)
    assert address.hostname is not None
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        for _ in range(3):
            connection.request("GET", "/moto-api/data.json")
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200
            assert answer.version == 11
            assert (answer.getheader("Connection") or "").lower() != "close"
            socket_used = connection.sock
            assert socket_used is not None
        # Still the first connection: the server closed none of them.
        assert connection.sock is socket_used
    finally:
        connection.close()


def test_s3_user_metadata_names_come_back_in_lower_case(moto_endpoint: str) -> None:
    # S3 stores user-metadata names in lower case; waitress capitalizes response header
    # names, and botocore keeps a header's case in the Metadata keys it returns.
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    bucket = f"metadata-case-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata={"record-count": "3", "Trigger": "t"})
    assert s3.head_object(Bucket=bucket, Key="k")["Metadata"] == {
        "record-count": "3",
        "trigger": "t",
    }


def test_a_deleted_message_is_not_kept_by_the_emulator(moto_endpoint: str) -> None:
    # moto kept every model object it ever made (deleted SQS messages, overwritten S3
    # objects, Kinesis records) for its data.json dump, so its memory grew with the run.
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    queue = sqs.create_queue(QueueName=f"registry-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="short-lived")
    for message in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    registry = httpx.get(f"{moto_endpoint}/moto-api/data.json", timeout=30).json()
    assert registry["sqs"].get("Message", []) == []
