"""What the ingest-api needs on the moto server before it takes a record: the stream, the
card-number key and its merchants' registry entries."""

from __future__ import annotations

import boto3
from merchant_entries import register

from cardstream_shared import resource_names as names
from cardstream_shared.pan import PanKeyring


def provision_ingest(endpoint: str, *merchants: str, shards: int = 1) -> None:
    """Create the stream (``shards`` shards, waited for), the PAN key secret, and a registry
    entry for each of ``merchants``."""
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    kinesis.create_stream(StreamName=names.STREAM_NAME, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=names.STREAM_NAME, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
    )
    boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1").create_secret(
        Name=names.PAN_KEY_SECRET, SecretString=PanKeyring.new_secret_string()
    )
    register(endpoint, *merchants)
