"""Configuration fails closed outside the local stack and the tests.

No service defaults to the ``local`` environment; outside ``local`` and ``test`` a
placeholder password inside a URL is refused, the issuer's key set must come over https,
and database connections must verify the server (``verify-full``) against a CA bundle that
exists, by default the Amazon RDS bundle shipped in ``cardstream_shared``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from cardstream_monitoring.settings import RulesSettings
from cardstream_shared.settings import RDS_CA_BUNDLE, ServiceSettings, load_settings
from dashboard.settings import DashboardSettings
from db_loader import backfill
from db_loader.migrate import trust_rds_authorities
from db_loader.settings import LoaderSettings
from ingest_api.settings import IngestSettings
from stream_writer.settings import WriterSettings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
TOKENS = {"jwt_issuer": "https://issuer", "jwt_audience": "c1", "jwks_url": "https://k/jwks.json"}
DATABASE = {"database_secret_id": "db/secret", "database_sslmode": "verify-full"}
# Each service's settings with what a production deployment sets (the CDK app's values).
SIGNIN = {
    "signin_authorize_url": "https://sign-in.example/oauth2/authorize",
    "signin_token_url": "https://relay.example/relay/oauth2/token",
    "signin_client_id": "operators",
}
PRODUCTION: dict[type[ServiceSettings], dict[str, Any]] = {
    IngestSettings: {**TOKENS, **DATABASE},
    DashboardSettings: {**TOKENS, **DATABASE, **SIGNIN},
    LoaderSettings: {"queue_url": "https://sqs/q", **DATABASE},
    WriterSettings: {"bucket": "landing"},
    RulesSettings: {},
}
DATABASE_SERVICES = [IngestSettings, DashboardSettings, LoaderSettings]
TOKEN_SERVICES = [IngestSettings, DashboardSettings]


def _names(cls: type[ServiceSettings]) -> str:
    return cls.__name__


@pytest.mark.parametrize("cls", list(PRODUCTION), ids=_names)
def test_no_service_defaults_to_the_local_environment(
    cls: type[ServiceSettings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    variable = cls.env_name("environment")
    monkeypatch.delenv(variable, raising=False)
    for field, value in PRODUCTION[cls].items():
        monkeypatch.setenv(cls.env_name(field), str(value))
    with pytest.raises(SystemExit) as refused:
        load_settings(cls)
    assert refused.value.code == 2
    assert f"{variable}: Field required" in capsys.readouterr().err


def test_a_backfill_names_the_missing_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("LOADER_ENVIRONMENT", raising=False)
    parser = argparse.ArgumentParser()
    backfill.add_arguments(parser)
    assert backfill.run(parser.parse_args([str(tmp_path / "rows.csv")])) == 2
    assert "LOADER_ENVIRONMENT: Field required" in capsys.readouterr().err


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
@pytest.mark.parametrize("cls", list(PRODUCTION), ids=_names)
def test_a_production_configuration_is_accepted(
    cls: type[ServiceSettings], environment: str
) -> None:
    assert cls(environment=environment, **PRODUCTION[cls]).environment == environment


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://cardstream_api:changeme@db:5432/cardstream",
        "postgresql://cardstream_api:PASSWORD@db/cardstream?sslmode=verify-full",
        "postgresql://cardstream_api:%63hangeme@db/cardstream",
        "postgresql://cardstream_api:@db/cardstream",
    ],
)
@pytest.mark.parametrize("cls", DATABASE_SERVICES, ids=_names)
def test_a_placeholder_password_inside_a_database_url_is_refused(
    cls: type[ServiceSettings], url: str
) -> None:
    values = {**PRODUCTION[cls], "database_url": url}
    with pytest.raises(ValidationError) as refused:
        cls(environment="prod", **values)
    message = str(refused.value)
    assert f"{cls.env_name('database_url')} holds a placeholder secret" in message
    assert url not in message
    # The local stack and the tests may use anything.
    cls(environment="local", **values)


def test_a_placeholder_password_inside_any_url_setting_is_refused() -> None:
    with pytest.raises(ValidationError, match="LOADER_ALERT_WEBHOOK_URL holds a placeholder"):
        RulesSettings(
            environment="prod",
            alert_webhook_url="https://hook:secret@hooks.example.com/alerts",
            alert_webhook_secret="a-real-signing-secret-value",
        )


def test_a_real_password_inside_a_database_url_is_accepted() -> None:
    url = "postgresql://cardstream_api:Xk3%2Fq9-long-generated@db/cardstream"
    settings = IngestSettings(environment="prod", **PRODUCTION[IngestSettings], database_url=url)
    assert settings.database_url is not None


@pytest.mark.parametrize("jwks_url", ["http://issuer/jwks.json", "file:///srv/jwks.json"])
@pytest.mark.parametrize("cls", TOKEN_SERVICES, ids=_names)
def test_the_key_set_comes_over_https_outside_local_and_test(
    cls: type[ServiceSettings], jwks_url: str
) -> None:
    values = {**PRODUCTION[cls], "jwks_url": jwks_url}
    with pytest.raises(ValidationError, match=f"{cls.env_name('jwks_url')} must be an https"):
        cls(environment="staging", **values)
    for environment in ("local", "test"):
        cls(environment=environment, **values)


@pytest.mark.parametrize("sslmode", [None, "disable", "prefer", "require", "verify-ca"])
@pytest.mark.parametrize("cls", DATABASE_SERVICES, ids=_names)
def test_database_tls_must_verify_the_server_outside_local_and_test(
    cls: type[ServiceSettings], sslmode: str | None
) -> None:
    values = {**PRODUCTION[cls], "database_sslmode": sslmode}
    with pytest.raises(
        ValidationError, match=f"{cls.env_name('database_sslmode')} must be verify-full"
    ):
        cls(environment="dev", **values)
    cls(environment="test", **values)


@pytest.mark.parametrize("cls", DATABASE_SERVICES, ids=_names)
def test_the_ca_bundle_must_exist(cls: type[ServiceSettings], tmp_path: Path) -> None:
    values = {**PRODUCTION[cls], "database_sslrootcert": tmp_path / "missing.pem"}
    with pytest.raises(
        ValidationError, match=f"{cls.env_name('database_sslrootcert')} names no readable file"
    ):
        cls(environment="prod", **values)
    assert cls(environment="prod", **PRODUCTION[cls]).database_sslrootcert == RDS_CA_BUNDLE


def _name(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    return str(certificate.subject.get_attributes_for_oid(oid)[0].value)


def test_the_shipped_bundle_holds_amazon_rds_authorities_for_the_deployment_region() -> None:
    certificates = x509.load_pem_x509_certificates(RDS_CA_BUNDLE.read_bytes())
    assert len(certificates) > 50
    for certificate in certificates:
        assert _name(certificate, NameOID.ORGANIZATION_NAME) == "Amazon Web Services, Inc."
        assert _name(certificate, NameOID.ORGANIZATIONAL_UNIT_NAME) == "Amazon RDS"
        assert _name(certificate, NameOID.COMMON_NAME).startswith("Amazon RDS ")
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.value.ca
    region = json.loads((REPO / "infra" / "cdk.json").read_text())["context"]["cardstream"][
        "region"
    ]
    now = dt.datetime.now(dt.UTC)
    current_roots = {
        _name(c, NameOID.COMMON_NAME)
        for c in certificates
        if c.subject == c.issuer and c.not_valid_before_utc <= now < c.not_valid_after_utc
    }
    for family in ("RSA2048 G1", "RSA4096 G1", "ECC384 G1"):
        assert f"Amazon RDS {region} Root CA {family}" in current_roots


def test_compose_names_the_environment_of_every_service() -> None:
    services = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]
    prefixes = {
        "ingest-api": "INGEST_",
        "stream-writer": "WRITER_",
        "db-loader": "LOADER_",
        "dashboard": "DASHBOARD_",
    }
    for service, prefix in prefixes.items():
        assert services[service]["environment"][f"{prefix}ENVIRONMENT"] == "local", service


def test_the_migration_trusts_the_rds_authorities_when_it_verifies_the_server() -> None:
    env = {"PGSSLMODE": "verify-full"}
    trust_rds_authorities(env)
    assert env["PGSSLROOTCERT"] == str(RDS_CA_BUNDLE)
    own = {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": "/etc/own-ca.pem"}
    trust_rds_authorities(own)
    assert own["PGSSLROOTCERT"] == "/etc/own-ca.pem"
    local = {"PGSSLMODE": "disable"}
    trust_rds_authorities(local)
    assert "PGSSLROOTCERT" not in local


def test_the_dashboard_signs_operators_in_over_https_outside_local_and_test() -> None:
    values = PRODUCTION[DashboardSettings]
    without = {k: v for k, v in values.items() if k != "signin_client_id"}
    with pytest.raises(ValidationError, match="DASHBOARD_SIGNIN_CLIENT_ID"):
        DashboardSettings(environment="prod", **without)
    plain = {**values, "signin_token_url": "http://relay.example/relay/oauth2/token"}
    with pytest.raises(ValidationError, match="DASHBOARD_SIGNIN_TOKEN_URL must be an https"):
        DashboardSettings(environment="prod", **plain)
    logout = {**values, "signout_url": "http://sign-in.example/logout"}
    with pytest.raises(ValidationError, match="DASHBOARD_SIGNOUT_URL must be an https"):
        DashboardSettings(environment="prod", **logout)
    # Locally sign-in may be off, but never half set.
    assert DashboardSettings(environment="local", **TOKENS, **DATABASE).signin_client is None
    with pytest.raises(ValidationError, match="sign-in needs all three"):
        DashboardSettings(environment="local", **without)
