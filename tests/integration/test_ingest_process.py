"""ingest-api as a real process (``python -m ingest_api``) against a moto server.

Start-up refusals (bad settings exit 2 naming the variable, a missing PAN key exits 3),
graceful SIGTERM with requests in flight, and a schemathesis run over the OpenAPI document
that must find no server error.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from ingest_aws import provision_ingest
from schemathesis.checks import not_a_server_error

from cardstream.local.ports import free_port, wait_for_port
from cardstream_infra.components.fargate_task import health_check_command
from cardstream_shared import resource_names as names
from cardstream_shared.contract import StreamEnvelope, kaggle_example
from cardstream_shared.jwt_auth import SigningKey, generate_signing_key, issue_token
from db_loader.migrate import bootstrap, with_credentials

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STREAM = names.STREAM_NAME


@dataclass
class Api:
    url: str
    process: subprocess.Popen[bytes]
    token: str
    moto: str
    log: Path


def _start_moto(log: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    # The child keeps its own copy of the descriptor; ours is closed at once.
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "cardstream.local.moto_server", "--port", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    wait_for_port("127.0.0.1", port, timeout_s=60, alive=lambda: process.poll() is None)
    return f"http://127.0.0.1:{port}", process


def _env(endpoint: str, jwks: Path, port: int, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "INGEST_ENVIRONMENT": "test",
        "INGEST_AWS_ENDPOINT_URL": endpoint,
        "INGEST_PORT": str(port),
        "INGEST_STREAM_NAME": STREAM,
        "INGEST_JWT_ISSUER": "cardstream-local",
        "INGEST_JWT_AUDIENCE": "cardstream",
        "INGEST_JWKS_URL": f"file://{jwks}",
        "INGEST_DATABASE_SECRET_ID": "",
    }
    env.update(extra)
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return generate_signing_key("process-key")


@pytest.fixture(scope="module")
def jwks(tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey) -> Path:
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps(signing_key.jwks))
    return path


def _token(signing_key: SigningKey) -> str:
    return issue_token(
        signing_key,
        issuer="cardstream-local",
        audience="cardstream",
        subject="merchant-1",
        scopes=[names.SCOPE_WRITE, names.SCOPE_READ],
    )


@pytest.fixture
def own_moto(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A moto server of this test's own (one test pauses it)."""
    endpoint, process = _start_moto(tmp_path / "moto.log")
    try:
        provision_ingest(endpoint, "merchant-1")
        yield endpoint, process
    finally:
        _stop(process)


def _run_api(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "ingest_api"], env=env, stdout=handle, stderr=subprocess.STDOUT
        )


def test_invalid_settings_exit_2_naming_each_variable(tmp_path: Path, jwks: Path) -> None:
    env = _env("http://127.0.0.1:1", jwks, free_port(), INGEST_JWKS_URL="ftp://keys")
    del env["INGEST_JWT_ISSUER"]
    result = subprocess.run(
        [sys.executable, "-m", "ingest_api"], env=env, capture_output=True, timeout=60
    )
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "INGEST_JWKS_URL" in stderr
    assert "INGEST_JWT_ISSUER" in stderr
    assert "ftp://keys" not in stderr


def test_missing_pan_key_refuses_to_start(
    own_moto: tuple[str, subprocess.Popen[bytes]], tmp_path: Path, jwks: Path
) -> None:
    endpoint, _ = own_moto
    env = _env(endpoint, jwks, free_port(), INGEST_PAN_KEY_SECRET_ID="cardstream/absent")
    result = subprocess.run(
        [sys.executable, "-m", "ingest_api"], env=env, capture_output=True, timeout=60
    )
    assert result.returncode == 3
    assert "cardstream/absent" in result.stderr.decode()


def test_serves_https_with_a_certificate_of_its_own(
    own_moto: tuple[str, subprocess.Popen[bytes]], tmp_path: Path, jwks: Path
) -> None:
    # In AWS the ALB forwards over HTTPS; the task makes its certificate when it starts.
    endpoint, _ = own_moto
    port = free_port()
    api = _run_api(_env(endpoint, jwks, port, INGEST_TLS_SELF_SIGNED="true"), tmp_path / "api.log")
    try:
        wait_for_port("127.0.0.1", port, timeout_s=60, alive=lambda: api.poll() is None)
        answer = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=False, timeout=10)
        assert answer.status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        # The container health check of the task definition passes against it.
        command = health_check_command(port, tls=True)
        assert command[:2] == ["CMD", "python"]
        assert subprocess.run([sys.executable, *command[2:]], timeout=60).returncode == 0
    finally:
        _stop(api)


def _in_progress(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith("cardstream_ingest_requests_in_progress "):
            return float(line.split()[1])
    raise AssertionError("gauge missing")


def _wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _stream_trans_nums(endpoint: str) -> list[str]:
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    iterator = kinesis.get_shard_iterator(
        StreamName=STREAM, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator)["Records"]
    return [StreamEnvelope.model_validate_json(r["Data"]).trans_num for r in records]


def test_sigterm_finishes_in_flight_requests_and_flushes(
    own_moto: tuple[str, subprocess.Popen[bytes]],
    tmp_path: Path,
    jwks: Path,
    signing_key: SigningKey,
) -> None:
    endpoint, moto = own_moto
    port = free_port()
    log = tmp_path / "api.log"
    api = _run_api(_env(endpoint, jwks, port), log)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {_token(signing_key)}"}
    rows = [kaggle_example() | {"trans_num": f"inflight-{n}"} for n in range(8)]
    try:
        wait_for_port("127.0.0.1", port, timeout_s=60, alive=lambda: api.poll() is None)
        # Pausing Kinesis holds every request inside the producer: in flight, not answered.
        moto.send_signal(signal.SIGSTOP)
        with ThreadPoolExecutor(len(rows)) as pool:
            futures = [
                pool.submit(
                    httpx.post, f"{url}/v1/transactions", json=row, headers=headers, timeout=30
                )
                for row in rows
            ]
            # Every request is in flight (the gauge counts this scrape too).
            _wait_for(lambda: _in_progress(url) >= len(rows) + 1, "every request in flight")
            api.send_signal(signal.SIGTERM)
            # uvicorn logs this once it closed its listening socket and waits for them.
            _wait_for(
                lambda: "Waiting for connections to close" in log.read_text(errors="replace"),
                "the server to begin its shutdown",
            )
            # New connections are refused once shutdown began.
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{url}/healthz", timeout=2)
            moto.send_signal(signal.SIGCONT)
            responses = [f.result() for f in futures]
        api.wait(30)
    finally:
        moto.send_signal(signal.SIGCONT)
        _stop(api)
    assert [r.status_code for r in responses] == [202] * len(rows)
    assert sorted(_stream_trans_nums(endpoint)) == sorted(r["trans_num"] for r in rows)


# --- schema-driven fuzzing -------------------------------------------------------------------


@pytest.fixture
def fuzz_api(
    tmp_path: Path, jwks: Path, signing_key: SigningKey, empty_database: str
) -> Iterator[Api]:
    """The API with its stream and a migrated database (reads answer, not 503)."""
    password = secrets.token_urlsafe(16)
    bootstrap(empty_database, role_passwords={names.DB_API_ROLE: password})
    api_dsn = with_credentials(empty_database, names.DB_API_ROLE, password)
    state = tmp_path
    endpoint, moto = _start_moto(state / "moto.log")
    port = free_port()
    api = None
    try:
        provision_ingest(endpoint, "merchant-1", shards=2)
        api = _run_api(
            _env(
                endpoint,
                jwks,
                port,
                INGEST_MAX_RECORDS_PER_REQUEST="50",
                INGEST_DATABASE_URL=api_dsn,
            ),
            state / "api.log",
        )
        wait_for_port("127.0.0.1", port, timeout_s=60, alive=lambda: api.poll() is None)
        yield Api(f"http://127.0.0.1:{port}", api, _token(signing_key), endpoint, state / "api.log")
    finally:
        if api is not None:
            _stop(api)
        _stop(moto)


def test_fuzzing_the_openapi_document_finds_no_server_error(fuzz_api: Api) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_api.url}/openapi.json")
    headers = {"Authorization": f"Bearer {fuzz_api.token}"}
    # The /v1/alerts routes mounted in this app belong to the alerts component, whose own
    # tests cover them; this run covers the ingest operations and the operational ones.
    operations = [
        operation
        for operation in (result.ok() for result in schema.get_all_operations())
        if not operation.path.startswith("/v1/alerts")
    ]
    assert {op.path for op in operations} >= {
        "/v1/transactions",
        "/v1/transactions/batch",
        "/v1/transactions/{trans_num}",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def no_server_error(case: Any) -> None:
            response = case.call(headers=headers, timeout=10)
            case.validate_response(response, checks=[not_a_server_error])

        no_server_error()
    assert fuzz_api.process.poll() is None, "the API process died"
