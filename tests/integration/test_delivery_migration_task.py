"""The AWS migration task's command, run as the task runs it, against real PostgreSQL.

The task gets the RDS master credentials as the libpq variables ECS injects from the master
secret (PGUSER, PGPASSWORD, PGHOST, PGPORT, PGDATABASE) and role passwords from the role
secrets in Secrets Manager (moto here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from urllib.parse import unquote, urlsplit

import boto3
import psycopg
import pytest

from cardstream_shared import resource_names as names

pytestmark = pytest.mark.integration

# In AWS every environment's secrets carry its name; the task is told which are its own.
ROLE_SECRETS = {
    role: secret.replace("cardstream/", "cardstream-test/", 1)
    for role, secret in names.DB_ROLE_SECRETS.items()
}


def test_migration_task_creates_roles_from_their_secrets_and_the_schema(
    moto_reset: str, empty_database: str
) -> None:
    parts = urlsplit(empty_database)
    secrets = boto3.client("secretsmanager", endpoint_url=moto_reset, region_name="us-east-1")
    passwords = {}
    for index, (role, secret) in enumerate(ROLE_SECRETS.items()):
        # Characters RDS-generated passwords may hold that a URL must not carry raw.
        passwords[role] = f"p%:{index}#?&=x"
        value = {
            "engine": "postgres",
            "username": role,
            "password": passwords[role],
            "host": parts.hostname,
            "port": parts.port,
            "dbname": parts.path.lstrip("/"),
        }
        secrets.create_secret(Name=secret, SecretString=json.dumps(value))
    env = {
        **{k: v for k, v in os.environ.items() if k != "CARDSTREAM_ADMIN_DATABASE_URL"},
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_reset,
        "PGUSER": unquote(parts.username or ""),
        "PGPASSWORD": unquote(parts.password or ""),
        "PGHOST": str(parts.hostname),
        "PGPORT": str(parts.port),
        "PGDATABASE": parts.path.lstrip("/"),
        # The task sets require (RDS forces TLS); the test server has no certificate.
        "PGSSLMODE": "disable",
        "CARDSTREAM_DB_ROLE_SECRETS": json.dumps(ROLE_SECRETS),
    }
    result = subprocess.run(
        [sys.executable, "-m", "db_loader.migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # It read the environment's secrets and created none under the local stack's names.
    listed = secrets.list_secrets()["SecretList"]
    assert {secret["Name"] for secret in listed} == set(ROLE_SECRETS.values())

    loader_dsn = psycopg.conninfo.make_conninfo(
        empty_database, user=names.DB_LOADER_ROLE, password=passwords[names.DB_LOADER_ROLE]
    )
    with psycopg.connect(loader_dsn) as conn:
        found = conn.execute(
            "SELECT count(*) FROM information_schema.tables"
            " WHERE table_schema = 'cardstream' AND table_name = 'object_ledger'"
        ).fetchone()
    assert found == (1,)
