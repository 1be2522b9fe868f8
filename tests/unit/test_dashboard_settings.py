"""DASHBOARD_* settings: what the environment may say and what it is refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dashboard.settings import DashboardSettings

pytestmark = pytest.mark.unit

REQUIRED = {
    "DASHBOARD_ENVIRONMENT": "test",
    "DASHBOARD_JWT_ISSUER": "cardstream-local",
    "DASHBOARD_JWT_AUDIENCE": "cardstream",
    "DASHBOARD_JWKS_URL": "file:///tmp/jwks.json",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key, value in REQUIRED.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def test_writer_metrics_urls_are_split_and_trimmed(env: pytest.MonkeyPatch) -> None:
    env.setenv("DASHBOARD_WRITER_METRICS_URLS", " http://127.0.0.1:9001/ ,,http://127.0.0.1:9002")
    assert DashboardSettings().writer_metrics_url_list == [
        "http://127.0.0.1:9001",
        "http://127.0.0.1:9002",
    ]


def test_defaults_read_the_dashboard_secret_and_listen_on_loopback(env: pytest.MonkeyPatch) -> None:
    settings = DashboardSettings()
    assert settings.database_secret_id == "cardstream/db/dashboard"
    assert (settings.host, settings.port) == ("127.0.0.1", 8050)
    assert settings.writer_metrics_url_list == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DASHBOARD_JWKS_URL", "ftp://issuer/jwks.json"),
        ("DASHBOARD_POOL_MIN_SIZE", "9"),
        ("DASHBOARD_REFRESH_INTERVAL_S", "0"),
        ("DASHBOARD_JWT_AUDIENCE_CLAIM", "azp"),
    ],
)
def test_invalid_values_are_refused(env: pytest.MonkeyPatch, variable: str, value: str) -> None:
    env.setenv(variable, value)
    with pytest.raises(ValidationError):
        DashboardSettings()


def test_a_database_source_is_required(env: pytest.MonkeyPatch) -> None:
    env.setenv("DASHBOARD_DATABASE_SECRET_ID", "")
    with pytest.raises(ValidationError, match="database_secret_id or database_url"):
        DashboardSettings()
    env.setenv("DASHBOARD_DATABASE_URL", "postgresql://analyst:pw@db/cardstream")
    assert DashboardSettings().database_url is not None
