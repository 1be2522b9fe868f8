"""What the ingest-api benchmarks (``ingest_api_bench.py``, ``body_limits_bench.py``) set up
around the API they measure: fake AWS credentials for the local emulator, the processes they
start and stop, a merchant the API knows and its token, and the API's settings.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import boto3

from cardstream.local.ports import wait_for_port
from cardstream_shared import resource_names as names
from cardstream_shared.jwt_auth import generate_signing_key, issue_token
from cardstream_shared.merchant_registry import DEFAULT_PATH, MerchantEntry, put_entry
from cardstream_shared.pan import PanKeyring

REGION = "us-east-1"
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": REGION,
}
MERCHANT = "bench-merchant"
ISSUER = "cardstream-local"
AUDIENCE = "cardstream"


def start(args: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start a server process (its output to ``log``) and wait until it listens on ``port``."""
    handle = log.open("wb")
    process = subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT)
    wait_for_port("127.0.0.1", port, timeout_s=90, alive=lambda: process.poll() is None)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started by :func:`start`: SIGTERM, then SIGKILL after 20 s."""
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def prepare_merchant(endpoint: str, state: Path) -> str:
    """Everything the API needs from the emulator and the disk to take the benchmark's
    records (the card-number key, the merchant's registry entry, the JWKS file under
    ``state``), and a write token of that merchant."""
    boto3.client("secretsmanager", endpoint_url=endpoint, region_name=REGION).create_secret(
        Name=names.PAN_KEY_SECRET, SecretString=PanKeyring.new_secret_string()
    )
    # A merchant of the registry with the highest limits an entry takes: the benchmarks
    # measure the service, not its rate limiter.
    put_entry(
        boto3.client("ssm", endpoint_url=endpoint, region_name=REGION),
        DEFAULT_PATH,
        MERCHANT,
        MerchantEntry(name=MERCHANT, records_per_second=1e6, burst=10_000_000),
    )
    key = generate_signing_key()
    (state / "jwks.json").write_text(json.dumps(key.jwks))
    return issue_token(
        key,
        issuer=ISSUER,
        audience=AUDIENCE,
        subject=MERCHANT,
        scopes=[names.SCOPE_WRITE],
        ttl_s=3600,
    )


def ingest_env(
    base: dict[str, str], endpoint: str, port: int, state: Path, stream: str
) -> dict[str, str]:
    """The ingest-api's settings for a benchmark: the emulator, ``stream``, the JWKS file
    :func:`prepare_merchant` wrote, and per-process rate limits out of the way (they are
    the baselines'; the merchant's own are in its registry entry)."""
    return {
        **base,
        "INGEST_ENVIRONMENT": "local",
        "INGEST_AWS_ENDPOINT_URL": endpoint,
        "INGEST_PORT": str(port),
        "INGEST_STREAM_NAME": stream,
        "INGEST_JWT_ISSUER": ISSUER,
        "INGEST_JWT_AUDIENCE": AUDIENCE,
        "INGEST_JWKS_URL": f"file://{state / 'jwks.json'}",
        "INGEST_LOG_LEVEL": "WARNING",
        "INGEST_RATE_LIMIT_RECORDS_PER_S": "100000000",
        "INGEST_RATE_LIMIT_BURST": "100000000",
    }
