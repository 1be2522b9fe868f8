"""compose.yaml: every service, port and environment variable the code needs is there."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from cardstream_shared import resource_names as names

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
# Each service's image: the workspace package and the module the container runs.
SERVICE_IMAGES = {
    "ingest-api": ("cardstream-ingest-api", "ingest_api"),
    "stream-writer": ("cardstream-stream-writer", "stream_writer"),
    "db-loader": ("cardstream-db-loader", "db_loader"),
    "dashboard": ("cardstream-dashboard", "dashboard"),
}
# Settings field of the port each service's /healthz answers on.
HEALTH_PORT_FIELD = {
    "ingest-api": "port",
    "stream-writer": "health_port",
    "db-loader": "health_port",
    "dashboard": "port",
}


def _listening_port(config: Any, service: str, env: dict[str, str]) -> int:
    """The port the service's /healthz answers on with this environment."""
    field = HEALTH_PORT_FIELD[service]
    return int(env.get(config.variable(field), config.default(field)))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping"
    return {key: str(value) for key, value in env.items()}


def test_compose_has_the_infrastructure_jobs_and_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "aws", "pgadmin", "bootstrap-aws", "migrate"} <= set(services)
    assert set(SERVICE_IMAGES) <= set(services)
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["pgadmin"]["image"].startswith("dpage/pgadmin4:")


def test_images_from_registries_are_pinned(compose: dict[str, Any]) -> None:
    services = compose["services"]
    # PostgreSQL by digest; pgAdmin (no digest source to verify against) by exact version.
    assert re.fullmatch(r"postgres:\d+-[a-z]+@sha256:[0-9a-f]{64}", services["postgres"]["image"])
    assert re.fullmatch(r"dpage/pgadmin4:\d+\.\d+", services["pgadmin"]["image"])


def test_the_tools_container_signs_tokens_the_services_accept(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    from cardstream.stack_info import STACK_FILE, load_stack_info

    tools = compose["services"]["tools"]
    # The CLI's default state directory is .cardstream under the image's WORKDIR, /app.
    assert re.search(r"^WORKDIR /app$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert tools["configs"] == [
        {"source": "stack-info", "target": f"/app/.cardstream/{STACK_FILE}"}
    ]
    (tmp_path / STACK_FILE).write_text(compose["configs"]["stack-info"]["content"])
    info = load_stack_info(tmp_path, required=("aws_endpoint_url", "aws_region", "jwt", "api_url"))
    assert info["aws_endpoint_url"] == tools["environment"]["AWS_ENDPOINT_URL"]
    assert info["aws_region"] == tools["environment"]["AWS_REGION"]
    assert info["jwt"]["signing_key_secret"] == names.JWT_SIGNING_KEY_SECRET
    for service, prefix in (("ingest-api", "INGEST_"), ("dashboard", "DASHBOARD_")):
        env = _env(compose["services"][service])
        assert info["jwt"]["issuer"] == env[f"{prefix}JWT_ISSUER"]
        assert info["jwt"]["audience"] == env[f"{prefix}JWT_AUDIENCE"]
    api = _env(compose["services"]["ingest-api"])
    assert info["api_url"] == f"http://ingest-api:{api['INGEST_PORT']}"


@pytest.mark.parametrize("service", sorted(SERVICE_IMAGES))
def test_services_build_from_the_baked_dockerfile(
    compose: dict[str, Any], service_configs: dict[str, Any], service: str
) -> None:
    definition = compose["services"][service]
    package, module = SERVICE_IMAGES[service]
    assert definition["build"]["context"] == "."
    assert definition["build"]["dockerfile"] == "Dockerfile"
    assert (REPO / definition["build"]["dockerfile"]).is_file()
    # The build arguments docker-bake.hcl gives the same image; PORT is where the image's
    # health check probes, the port the service listens on in this file.
    args = definition["build"]["args"]
    assert args["PACKAGE"] == package
    assert args["COMMAND"] == f"python -m {module}"
    assert int(args["PORT"]) == _listening_port(service_configs[service], service, _env(definition))
    # The same name and tag docker-bake.hcl gives it by default.
    assert definition["image"] == f"cardstream/{service}:dev"


@pytest.mark.parametrize("service", sorted(SERVICE_IMAGES))
def test_every_required_variable_is_set_and_every_name_is_real(
    compose: dict[str, Any], service_configs: dict[str, Any], service: str
) -> None:
    config = service_configs[service]
    env = _env(compose["services"][service])
    missing = config.required - set(env)
    assert not missing, f"{service} cannot start without {sorted(missing)}"
    own = {key for key in env if key.startswith(config.prefix)}
    unknown = own - config.variables
    assert not unknown, f"{service} sets variables it never reads: {sorted(unknown)}"
    # Every service talks to the emulator, not to AWS.
    assert env[config.variable("aws_endpoint_url")] == "http://aws:5000"
    assert env[config.variable("environment")] == "local"


@pytest.mark.parametrize("service", sorted(SERVICE_IMAGES))
def test_the_settings_class_accepts_the_compose_environment(
    compose: dict[str, Any], service_configs: dict[str, Any], service: str
) -> None:
    config = service_configs[service]
    env = _env(compose["services"][service])
    settings = config.load(env)
    assert settings.environment == "local"
    assert settings.aws_endpoint_url == "http://aws:5000"


@pytest.mark.parametrize("service", sorted(SERVICE_IMAGES))
def test_ports_are_published_on_loopback_to_the_port_the_service_listens_on(
    compose: dict[str, Any], service_configs: dict[str, Any], service: str
) -> None:
    config = service_configs[service]
    env = _env(compose["services"][service])
    port = _listening_port(config, service, env)
    host_field = "host" if HEALTH_PORT_FIELD[service] == "port" else "health_host"
    # Inside a container the service must listen beyond its own loopback to be published.
    assert env[config.variable(host_field)] == "0.0.0.0"
    published = compose["services"][service]["ports"]
    assert len(published) == 1
    address, _, container = published[0].split(":")
    assert address == "127.0.0.1"
    assert int(container) == port


def test_every_published_port_binds_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), name


def test_services_start_after_the_setup_jobs(compose: dict[str, Any]) -> None:
    for service in SERVICE_IMAGES:
        depends = compose["services"][service]["depends_on"]
        assert depends["bootstrap-aws"]["condition"] == "service_completed_successfully"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["aws"]["condition"] == "service_healthy"
        assert depends["postgres"]["condition"] == "service_healthy"


def _cli_args(command: str, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv`` with the parser of ``cardstream <command>``'s module."""
    from cardstream.cli import COMMANDS

    module = importlib.import_module(COMMANDS[command][0])
    parser = argparse.ArgumentParser(prog=f"cardstream {command}")
    module.add_arguments(parser)
    return parser.parse_args(argv)


def test_bootstrap_job_runs_the_local_stack_code_against_the_emulator(
    compose: dict[str, Any],
) -> None:
    job = compose["services"]["bootstrap-aws"]
    script = job["command"][0]
    first = shlex.split(script.split("&&")[0])
    assert first[:2] == ["cardstream", "bootstrap-aws"]
    args = _cli_args("bootstrap-aws", first[2:])
    assert args.endpoint_url == "http://aws:5000"
    assert args.db_host == "postgres"
    # It publishes the JWKS where the services' JWKS_URL points.
    assert "/jwks/jwks.json" in script
    assert "JWT_SIGNING_KEY_SECRET" in script
    assert job["depends_on"]["aws"]["condition"] == "service_healthy"


def test_migrate_job_runs_cardstream_migrate_on_the_compose_database(
    compose: dict[str, Any],
) -> None:
    command = compose["services"]["migrate"]["command"]
    assert command[:2] == ["cardstream", "migrate"]
    args = _cli_args("migrate", command[2:])
    assert args.admin_url.startswith("postgresql://postgres:")
    assert "@postgres:5432/" in args.admin_url
    assert args.aws_endpoint_url == "http://aws:5000"


def test_shared_values_agree_across_services(compose: dict[str, Any]) -> None:
    env = {name: _env(compose["services"][name]) for name in SERVICE_IMAGES}
    assert env["ingest-api"]["INGEST_STREAM_NAME"] == names.STREAM_NAME
    assert env["stream-writer"]["WRITER_STREAM_NAME"] == names.STREAM_NAME
    assert env["stream-writer"]["WRITER_BUCKET"] == names.LANDING_BUCKET
    assert env["stream-writer"]["WRITER_LEASE_TABLE"] == names.LEASE_TABLE
    assert env["db-loader"]["LOADER_QUEUE_URL"].endswith(f"/{names.LANDED_QUEUE}")
    assert env["dashboard"]["DASHBOARD_DLQ_URL"].endswith(f"/{names.LANDED_DLQ}")
    assert env["ingest-api"]["INGEST_PAN_KEY_SECRET_ID"] == names.PAN_KEY_SECRET
    assert env["ingest-api"]["INGEST_DATABASE_SECRET_ID"] == names.DB_API_SECRET
    assert env["db-loader"]["LOADER_DATABASE_SECRET_ID"] == names.DB_LOADER_SECRET
    assert env["dashboard"]["DASHBOARD_DATABASE_SECRET_ID"] == names.DB_DASHBOARD_SECRET
    for service, prefix in (("ingest-api", "INGEST_"), ("dashboard", "DASHBOARD_")):
        assert env[service][f"{prefix}JWKS_URL"] == "file:///jwks/jwks.json"
        assert "jwks:/jwks:ro" in compose["services"][service]["volumes"]


def test_emulator_is_the_single_threaded_moto_entry_point(compose: dict[str, Any]) -> None:
    aws = compose["services"]["aws"]
    assert aws["command"][:3] == ["python", "-m", "cardstream.local.moto_server"]
    assert importlib.util.find_spec("cardstream.local.moto_server") is not None
    assert aws["environment"]["CARDSTREAM_HEALTH_URL"].startswith("http://127.0.0.1:5000/")


def test_the_dashboard_signs_in_at_the_compose_sign_in_service(
    compose: dict[str, Any], service_configs: dict[str, Any]
) -> None:
    from cardstream.local.signin_server import DASHBOARD_CLIENT_ID, argument_parser
    from dashboard.auth import REQUIRED_SCOPES

    services = compose["services"]
    dashboard = services["dashboard"]
    settings = service_configs["dashboard"].load(_env(dashboard))
    # Without it the page only says that sign-in is not configured.
    client = settings.signin_client
    assert client is not None, "the compose dashboard has no sign-in provider"
    assert "sign-in" in services, "the compose dashboard's sign-in provider is not in compose"
    signin = services["sign-in"]
    command = signin["command"]
    assert command[:3] == ["python", "-m", "cardstream.local.signin_server"]
    args = argument_parser().parse_args(command[3:])
    # It listens beyond its container's loopback and is published on the host's, as the
    # browser is sent to it; the dashboard's container exchanges codes with it by name.
    assert args.host == "0.0.0.0"
    (published,) = signin["ports"]
    address, host_port, container_port = published.split(":")
    assert (address, int(container_port)) == ("127.0.0.1", args.port)
    assert client.authorize_url == f"http://127.0.0.1:{host_port}/oauth2/authorize"
    assert client.token_url == f"http://sign-in:{args.port}/oauth2/token"
    assert client.client_id == DASHBOARD_CLIENT_ID
    # The way back is the dashboard's callback at the address the browser sees.
    dashboard_port = dashboard["ports"][0].split(":")[1]
    assert settings.public_url == f"http://127.0.0.1:{dashboard_port}"
    assert args.redirect_uri == f"{settings.public_url}{names.SIGNIN_CALLBACK_PATH}"
    # Its tokens are signed with the key the services trust and hold every scope the
    # dashboard requires.
    assert (args.issuer, args.audience) == (settings.jwt_issuer, settings.jwt_audience)
    assert args.signing_key_secret == names.JWT_SIGNING_KEY_SECRET
    assert args.aws_endpoint_url == "http://aws:5000"
    assert set(REQUIRED_SCOPES) <= set(client.scopes.split()) <= set(args.scope)
    # It starts once the bootstrap job made the key, and the dashboard once it answers.
    assert signin["depends_on"]["bootstrap-aws"]["condition"] == "service_completed_successfully"
    assert signin["environment"]["CARDSTREAM_HEALTH_URL"] == (
        f"http://127.0.0.1:{args.port}/healthz"
    )
    assert dashboard["depends_on"]["sign-in"]["condition"] == "service_healthy"
