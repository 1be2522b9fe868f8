"""One resolution of a service's database URL, whichever service and whichever source."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from cardstream_shared.database import (
    DatabaseNotConfiguredError,
    database_url,
    url_from_secret,
    with_sslmode,
)
from cardstream_shared.settings import RDS_CA_BUNDLE, DatabaseSettings
from dashboard.settings import DashboardSettings
from db_loader.settings import LoaderSettings
from ingest_api.settings import IngestSettings

pytestmark = pytest.mark.unit

SECRET = {
    "username": "cardstream_api",
    "password": "p@ss/word",
    "host": "db.internal",
    "port": 5433,
    "dbname": "cardstream",
}
# A verifying mode names the CA bundle (the RDS one unless the settings name another).
ROOTCERT = urlencode({"sslrootcert": str(RDS_CA_BUNDLE)})
REQUIRED = {
    IngestSettings: {"jwt_issuer": "i", "jwt_audience": "a", "jwks_url": "https://x/jwks"},
    DashboardSettings: {"jwt_issuer": "i", "jwt_audience": "a", "jwks_url": "https://x/jwks"},
    LoaderSettings: {"queue_url": "q"},
}


class Secrets:
    """A Secrets Manager client's one call used here, answering one secret."""

    def __init__(self, secret_id: str) -> None:
        self.secret_id = secret_id

    async def get_secret_value(self, *, SecretId: str) -> dict[str, Any]:  # noqa: N803
        assert SecretId == self.secret_id
        return {"SecretString": json.dumps(SECRET)}


@pytest.mark.parametrize("cls", list(REQUIRED))
async def test_every_service_sets_its_sslmode_on_a_url_and_on_a_secret_alike(
    cls: type[DatabaseSettings],
) -> None:
    from_url = cls(
        environment="test",
        database_url="postgresql://u:p@h:5432/d?application_name=x&sslmode=disable",
        database_sslmode="verify-full",
        **REQUIRED[cls],
    )
    assert await database_url(from_url) == (
        f"postgresql://u:p@h:5432/d?application_name=x&sslmode=verify-full&{ROOTCERT}"
    )
    from_secret = cls(
        environment="test",
        database_secret_id="db/secret",
        database_sslmode="verify-full",
        **REQUIRED[cls],
    )
    assert await database_url(from_secret, secrets=Secrets("db/secret")) == (
        "postgresql://cardstream_api:p%40ss%2Fword@db.internal:5433/cardstream"
        f"?sslmode=verify-full&{ROOTCERT}"
    )


async def test_without_a_url_or_a_secret_there_is_no_database() -> None:
    settings = IngestSettings(
        environment="test", database_secret_id=None, **REQUIRED[IngestSettings]
    )
    with pytest.raises(DatabaseNotConfiguredError):
        await database_url(settings)


def test_a_url_keeps_its_other_parameters_and_its_password_as_written() -> None:
    url = "postgresql://u:p%3Aw@h/d?target_session_attrs=read-write"
    assert with_sslmode(url, None) == url
    assert with_sslmode(url, "require") == (
        "postgresql://u:p%3Aw@h/d?target_session_attrs=read-write&sslmode=require"
    )


@pytest.mark.parametrize("secret", ["not json", "{}", '{"username": "u"}', "[]"])
def test_a_malformed_secret_is_named_without_its_content(secret: str) -> None:
    with pytest.raises(ValueError, match="database secret is malformed") as refused:
        url_from_secret(secret)
    assert secret not in str(refused.value)
