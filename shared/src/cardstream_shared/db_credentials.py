"""Database connection strings from Secrets Manager (the RDS secret format) or a URL."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote


def dsn_from_secret(secret_string: str, *, sslmode: str | None = None) -> str:
    """PostgreSQL URL from an RDS-style secret: username, password, host, port, dbname."""
    try:
        data: dict[str, Any] = json.loads(secret_string)
        user = quote(str(data["username"]), safe="")
        password = quote(str(data["password"]), safe="")
        host = str(data["host"])
        port = int(data.get("port", 5432))
        dbname = quote(str(data.get("dbname", "postgres")), safe="")
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"database secret is malformed: {type(exc).__name__}") from None
    dsn = f"postgresql://{user}:{password}@{host}:{port}/{dbname}"
    return f"{dsn}?sslmode={sslmode}" if sslmode else dsn


def secret_string(name: str, secrets_client: Any) -> str:
    """Fetch a secret's string value with a boto3 Secrets Manager client."""
    return str(secrets_client.get_secret_value(SecretId=name)["SecretString"])
