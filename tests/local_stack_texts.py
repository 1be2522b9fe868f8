"""Every text a local stack holds, for tests that search it for card numbers: the AWS
emulator's objects and stream records, every table's rows, every process's log.

``info`` is the stack's state file (``cardstream up`` writes it): the emulator's endpoint,
its region and the stream's name.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg


def s3_texts(info: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(``s3://bucket/key``, the object's text and metadata) of every object in every bucket;
    gzip objects are read decompressed."""
    s3 = boto3.client("s3", endpoint_url=info["aws_endpoint_url"], region_name=info["aws_region"])
    for bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                obj = s3.get_object(Bucket=bucket, Key=item["Key"])
                body = obj["Body"].read()
                if body[:2] == b"\x1f\x8b":
                    body = gzip.decompress(body)
                metadata = json.dumps(obj.get("Metadata", {}))
                yield f"s3://{bucket}/{item['Key']}", body.decode(errors="replace") + metadata


def stream_texts(info: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(``kinesis/shard/sequence number``, the record's data and partition key) of every
    record in the stream, read from the start of each shard."""
    kinesis = boto3.client(
        "kinesis", endpoint_url=info["aws_endpoint_url"], region_name=info["aws_region"]
    )
    for shard in kinesis.list_shards(StreamName=info["stream_name"])["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=info["stream_name"],
            ShardId=shard["ShardId"],
            ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            for record in page["Records"]:
                text = record["Data"].decode(errors="replace") + record["PartitionKey"]
                yield f"kinesis/{shard['ShardId']}/{record['SequenceNumber']}", text
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")


def database_texts(admin_dsn: str) -> Iterator[tuple[str, str]]:
    """(``schema.table``, a row as text) of every row of every table outside the catalogs."""
    with psycopg.connect(admin_dsn) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
            "AND table_type = 'BASE TABLE'"
        ).fetchall()
        for schema, table in tables:
            for (row,) in conn.execute(f'SELECT t::text FROM "{schema}"."{table}" t'):
                yield f"{schema}.{table}", row


def log_texts(state: Path) -> Iterator[tuple[str, str]]:
    """(path, text) of every log under the stack's state folder and of ``cardstream up``'s
    own (``up.log`` beside it)."""
    for path in [*state.rglob("*.log"), state.parent / "up.log"]:
        if path.is_file():
            yield str(path), path.read_text(errors="replace")
