"""``cardstream bootstrap-aws``: create the AWS resources and secrets in an emulator.

The compose file runs this as a one-shot job against its AWS emulator; ``cardstream up``
calls the same code against moto.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict

import boto3
from botocore.config import Config

from cardstream.local.provisioning import provision

SERVICES = ("kinesis", "sqs", "s3", "dynamodb", "secretsmanager", "ssm")


def clients_for(endpoint_url: str, region: str) -> dict[str, object]:
    """boto3 clients for every service the pipeline uses, against ``endpoint_url``."""
    config = Config(region_name=region, retries={"mode": "standard", "max_attempts": 10})
    return {
        name: boto3.client(name, endpoint_url=endpoint_url, region_name=region, config=config)  # type: ignore[call-overload]
        for name in SERVICES
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cardstream bootstrap-aws``."""
    parser.add_argument(
        "--endpoint-url",
        default=os.environ.get("AWS_ENDPOINT_URL"),
        required=os.environ.get("AWS_ENDPOINT_URL") is None,
        help="AWS emulator URL (default: $AWS_ENDPOINT_URL)",
    )
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    parser.add_argument("--shards", type=int, default=2, help="Kinesis shard count")
    parser.add_argument("--db-host", default="127.0.0.1", help="host written to DB secrets")
    parser.add_argument("--db-port", type=int, default=5432, help="port written to DB secrets")


def run(args: argparse.Namespace) -> int:
    """Create everything and print what was made as JSON (no secret values)."""
    made = provision(
        clients_for(args.endpoint_url, args.region),
        region=args.region,
        shards=args.shards,
        db_host=args.db_host,
        db_port=args.db_port,
    )
    print(json.dumps({"resources": asdict(made.resources)}, indent=2))
    return 0
