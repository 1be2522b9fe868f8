"""Create the database and its roles, then apply every Alembic migration (idempotent).

``bootstrap`` is what the local stack and the tests call; ``cardstream migrate`` is the same
step from the command line, with role passwords taken from Secrets Manager (or generated and
stored there, in the RDS secret format the services read). ``python -m db_loader.migrate``
is the migration task of the db-loader image: ECS injects the RDS master secret's fields
as libpq variables (``PGHOST``, ``PGUSER``, ...), not as a URL, so the admin URL may also be
built from those.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from cardstream_shared import resource_names as names
from cardstream_shared.settings import RDS_CA_BUNDLE
from db_loader.models import SCHEMA

# The roles that log in, each with its secret.
ROLES: Final = tuple(names.DB_ROLE_SECRETS)
# Maintenance databases: an admin URL naming one of these means "use the cardstream database".
_MAINTENANCE_DATABASES: Final = frozenset({"", "postgres", "template1"})
# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_ID: Final = 0x63617264


def target_database(admin_dsn: str) -> str:
    """The database ``bootstrap`` works on: the one the URL names, unless it is a maintenance
    database, in which case ``cardstream`` (so tests can bootstrap a database of their own)."""
    name = unquote(urlsplit(admin_dsn).path.lstrip("/"))
    return names.DB_NAME if name in _MAINTENANCE_DATABASES else name


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at ``database``."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def with_credentials(dsn: str, user: str, password: str) -> str:
    """``dsn`` logging in as ``user`` with ``password`` (host, port, database kept)."""
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _ensure_role(conn: psycopg.Connection[Any], role: str, *, login: bool) -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if not exists:
        # Another bootstrap may create it between our check and our CREATE.
        with contextlib.suppress(psycopg.errors.DuplicateObject):
            conn.execute(
                sql.SQL("CREATE ROLE {} " + ("LOGIN" if login else "NOLOGIN")).format(
                    sql.Identifier(role)
                )
            )


def _ensure_roles(conn: psycopg.Connection[Any], role_passwords: dict[str, str]) -> None:
    for role in ROLES:
        _ensure_role(conn, role, login=True)
        password = role_passwords.get(role)
        if password is not None:
            conn.execute(
                sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
    _ensure_role(conn, names.DB_TENANT_READER_ROLE, login=False)
    # The owner hands the tenant-scoped views to the tenant reader (ALTER VIEW ... OWNER TO
    # needs membership). No role that logs in, other than the owner, is a member.
    member = conn.execute(
        "SELECT pg_has_role(%s, %s, 'MEMBER')",
        (names.DB_OWNER_ROLE, names.DB_TENANT_READER_ROLE),
    ).fetchone()
    if not (member and member[0]):
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(names.DB_TENANT_READER_ROLE), sql.Identifier(names.DB_OWNER_ROLE)
            )
        )


def _ensure_database(conn: psycopg.Connection[Any], database: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
    if exists:
        return
    with contextlib.suppress(psycopg.errors.DuplicateDatabase):
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(names.DB_OWNER_ROLE)
            )
        )


# One Alembic history in two folders: the transaction model's migrations here, and the
# alert tables' beside the rules that fill them (cardstream_monitoring). Revisions of both
# folders form a single chain with one head.
MIGRATION_FOLDERS: Final = ("db_loader:migrations/versions", "cardstream_monitoring:migrations")


def alembic_config() -> Config:
    """Alembic configuration: the environment in this package, every migration folder."""
    config = Config()
    config.set_main_option("script_location", "db_loader:migrations")
    config.set_main_option("path_separator", "space")
    config.set_main_option("version_locations", " ".join(MIGRATION_FOLDERS))
    return config


def bootstrap(admin_dsn: str, *, role_passwords: dict[str, str]) -> None:
    """Create the roles and the database if missing and apply all migrations, as the owner.

    ``admin_dsn`` is a superuser URL. ``role_passwords`` maps role names
    (``resource_names.DB_*_ROLE``) to passwords to set; roles not named keep theirs.
    Safe to call concurrently and repeatedly.
    """
    database = target_database(admin_dsn)
    admin_database = unquote(urlsplit(admin_dsn).path.lstrip("/"))
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        _ensure_roles(conn, role_passwords)
        if database != admin_database:
            _ensure_database(conn, database)
    database_dsn = with_database(admin_dsn, database)
    with psycopg.connect(database_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(
                sql.Identifier(SCHEMA), sql.Identifier(names.DB_OWNER_ROLE)
            )
        )
        # Least privilege: PostgreSQL lets PUBLIC connect and create temporary tables by
        # default; only the service roles may connect, and none needs temporary tables.
        conn.execute(
            sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database))
        )
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(database), sql.SQL(", ").join(map(sql.Identifier, ROLES))
            )
        )
    engine = create_engine(
        with_database(admin_dsn, database).replace("postgresql://", "postgresql+psycopg://", 1),
        poolclass=NullPool,
    )
    try:
        with engine.connect() as connection:
            # Everything the migrations create belongs to the owner role, not the superuser.
            connection.exec_driver_sql(f'SET ROLE "{names.DB_OWNER_ROLE}"')
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({_MIGRATION_LOCK_ID})")
            connection.commit()
            try:
                config = alembic_config()
                config.attributes["connection"] = connection
                # "heads": other teams' migrations may branch from ours.
                command.upgrade(config, "heads")
                connection.commit()
            finally:
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK_ID})")
                connection.commit()
    finally:
        engine.dispose()


def _role_password_from_secrets(
    secrets_client: Any, role: str, name: str, admin_dsn: str, database: str
) -> str:
    """The role's password from its secret ``name``, or a new one stored there as an
    RDS-style secret."""
    try:
        value = secrets_client.get_secret_value(SecretId=name)["SecretString"]
        return str(json.loads(value)["password"])
    except secrets_client.exceptions.ResourceNotFoundException:
        pass
    password = secrets.token_urlsafe(24)
    parts = urlsplit(admin_dsn)
    secret = {
        "engine": "postgres",
        "username": role,
        "password": password,
        "host": parts.hostname or "localhost",
        "port": parts.port or 5432,
        "dbname": database,
    }
    secrets_client.create_secret(Name=name, SecretString=json.dumps(secret))
    return password


# libpq's variables that make an admin URL; PGPORT defaults to 5432 as in libpq.
_LIBPQ_REQUIRED: Final = ("PGHOST", "PGUSER", "PGPASSWORD", "PGDATABASE")


class MissingSettingError(ValueError):
    """No admin URL can be made from the settings given; the message names what is missing."""


def admin_url(explicit: str | None, env: Mapping[str, str]) -> str:
    """The superuser URL: ``explicit`` (``--admin-url`` or CARDSTREAM_ADMIN_DATABASE_URL),
    else one built from libpq's variables, each part percent-encoded."""
    if explicit:
        return explicit
    missing = [name for name in _LIBPQ_REQUIRED if not env.get(name)]
    if len(missing) == len(_LIBPQ_REQUIRED):
        raise MissingSettingError(
            "an admin database URL is required: --admin-url, CARDSTREAM_ADMIN_DATABASE_URL, "
            "or the libpq variables " + ", ".join(_LIBPQ_REQUIRED) + " (and PGPORT)"
        )
    if missing:
        raise MissingSettingError("missing libpq variables: " + ", ".join(missing))
    user, password = quote(env["PGUSER"], safe=""), quote(env["PGPASSWORD"], safe="")
    database = quote(env["PGDATABASE"], safe="")
    return f"postgresql://{user}:{password}@{env['PGHOST']}:{env.get('PGPORT', '5432')}/{database}"


def trust_rds_authorities(env: MutableMapping[str, str]) -> None:
    """When ``PGSSLMODE`` verifies the server (verify-ca, verify-full: the migration task in
    AWS) and ``PGSSLROOTCERT`` names no bundle, have libpq trust the Amazon RDS CA bundle
    shipped with ``cardstream_shared``."""
    if env.get("PGSSLMODE") in ("verify-ca", "verify-full"):
        env.setdefault("PGSSLROOTCERT", str(RDS_CA_BUNDLE))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cardstream migrate``."""
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("CARDSTREAM_ADMIN_DATABASE_URL"),
        help="superuser PostgreSQL URL (default: $CARDSTREAM_ADMIN_DATABASE_URL, else one "
        "made of the libpq variables PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)",
    )
    parser.add_argument(
        "--secrets",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="take role passwords from Secrets Manager, creating missing secrets with "
        "generated passwords (default); --no-secrets leaves passwords unchanged",
    )
    parser.add_argument(
        "--aws-endpoint-url",
        default=os.environ.get("AWS_ENDPOINT_URL"),
        help="Secrets Manager endpoint override, e.g. the local moto server",
    )
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    parser.add_argument(
        "--role-secrets",
        type=_role_secrets,
        default=os.environ.get("CARDSTREAM_DB_ROLE_SECRETS"),
        help="JSON object: each login role -> its secret's name or ARN (default: "
        "$CARDSTREAM_DB_ROLE_SECRETS, else the local stack's names; in AWS each "
        "environment's secrets carry its name)",
    )


def _role_secrets(value: str) -> dict[str, str]:
    try:
        mapping = json.loads(value)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error.msg}") from None
    if not isinstance(mapping, dict) or set(mapping) != set(ROLES):
        raise argparse.ArgumentTypeError(f"must map exactly the roles {', '.join(ROLES)}")
    return {str(role): str(secret) for role, secret in mapping.items()}


def run(args: argparse.Namespace) -> int:
    """``cardstream migrate``: returns the process exit status."""
    try:
        url = admin_url(args.admin_url, os.environ)
    except MissingSettingError as error:
        print(f"refusing to migrate: {error}", file=sys.stderr)
        return 2
    trust_rds_authorities(os.environ)
    passwords: dict[str, str] = {}
    if args.secrets:
        import boto3

        kwargs: dict[str, Any] = {"region_name": args.region}
        if args.aws_endpoint_url:
            kwargs["endpoint_url"] = args.aws_endpoint_url
        factory: Any = boto3.client
        client = factory("secretsmanager", **kwargs)
        database = target_database(url)
        # A string default (the environment variable) is converted by argparse too.
        role_secrets = args.role_secrets or names.DB_ROLE_SECRETS
        for role in ROLES:
            passwords[role] = _role_password_from_secrets(
                client, role, role_secrets[role], url, database
            )
    bootstrap(url, role_passwords=passwords)
    print(f"database {target_database(url)} is at the latest migration")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m db_loader.migrate``: the migration task's command."""
    parser = argparse.ArgumentParser(
        prog="python -m db_loader.migrate",
        description="Create the database roles and apply every migration.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
