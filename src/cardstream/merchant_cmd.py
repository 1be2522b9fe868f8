"""``cardstream merchant add NAME``: a merchant of its own, with its client and registry entry.

A merchant is an OAuth client of the token issuer with its own secret and the merchant
scopes, and an entry in the merchant registry (:mod:`cardstream_shared.merchant_registry`)
with its rate limit, keyed by the client's id; the ingest-api admits it as soon as the
entry exists, without a restart.

- Locally (the default), against the stack of ``stack.json``: the client is one the local
  issuer knows, kept as a Secrets Manager secret of the stack
  (``cardstream/local-clients/<name>``, with its id, secret and scopes), so that
  ``cardstream token --client NAME`` signs tokens for it; the entry goes under the
  registry path the local ingest-api reads.
- In AWS (``--aws``), against the deployment's user pool and registry path (the data
  stack's outputs ``UserPoolId`` and ``MerchantRegistryPath``): a Cognito app client with
  client credentials, its own generated secret and the resource server's merchant scopes,
  as the CDK app makes them for the merchants of its configuration.

It prints the client's id and secret once, as JSON, on stdout; the secret is not written
anywhere else by this command in AWS (Cognito keeps it).
"""

from __future__ import annotations

import argparse
import json
import secrets
import string
import sys
from pathlib import Path
from typing import Any, Final

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from cardstream.stack_info import StackInfoError, load_stack_info, local_aws_settings
from cardstream_shared import merchant_registry
from cardstream_shared import resource_names as names
from cardstream_shared.aws import boto3_client
from cardstream_shared.merchant_registry import MerchantEntry

MERCHANT_SCOPES: Final = (names.SCOPE_WRITE, names.SCOPE_READ)
# Where the local stack keeps the clients this command made (one secret each).
LOCAL_CLIENTS_PREFIX: Final = "cardstream/local-clients/"
# An access token's lifetime in AWS, as the CDK app sets it for its merchants' clients.
ACCESS_TOKEN_MINUTES: Final = 60
# Cognito's own client ids are 26 lower-case letters and digits; local ones look the same.
_ID_ALPHABET: Final = string.ascii_lowercase + string.digits


class MerchantError(Exception):
    """The merchant cannot be made (exists already, or the deployment lacks what it needs)."""


def client_name(name: str) -> str:
    """The app client's name of merchant ``name`` (as the CDK app names it)."""
    return f"merchant-{name}"


def local_client_secret_id(name: str) -> str:
    """The Secrets Manager secret holding the local client of merchant ``name``."""
    return f"{LOCAL_CLIENTS_PREFIX}{name}"


def add_local(secretsmanager: Any, ssm: Any, entry: MerchantEntry) -> dict[str, Any]:
    """Make the local client of ``entry``'s merchant and its registry entry; the client."""
    client = {
        "name": entry.name,
        "client_id": "".join(secrets.choice(_ID_ALPHABET) for _ in range(26)),
        "client_secret": secrets.token_urlsafe(32),
        "scopes": list(MERCHANT_SCOPES),
    }
    try:
        secretsmanager.create_secret(
            Name=local_client_secret_id(entry.name),
            SecretString=json.dumps(client),
            Description=f"local OAuth client of merchant {entry.name}",
        )
    except secretsmanager.exceptions.ResourceExistsException:
        raise MerchantError(f"merchant {entry.name} exists already") from None
    merchant_registry.put_entry(
        ssm, merchant_registry.DEFAULT_PATH, str(client["client_id"]), entry
    )
    return client


def local_client(secretsmanager: Any, name: str) -> dict[str, Any]:
    """The local client of merchant ``name``; :class:`MerchantError` if there is none."""
    try:
        value = secretsmanager.get_secret_value(SecretId=local_client_secret_id(name))
    except secretsmanager.exceptions.ResourceNotFoundException:
        raise MerchantError(
            f"no merchant {name} in this stack (cardstream merchant add {name})"
        ) from None
    client: dict[str, Any] = json.loads(value["SecretString"])
    return client


def _merchant_scopes(cognito: Any, user_pool_id: str) -> list[str]:
    # The resource server the CDK app made: the one whose scopes include the merchants'.
    servers = cognito.list_resource_servers(UserPoolId=user_pool_id, MaxResults=50)
    for server in servers.get("ResourceServers", []):
        scopes = {scope["ScopeName"] for scope in server.get("Scopes", [])}
        if set(MERCHANT_SCOPES) <= scopes:
            return [f"{server['Identifier']}/{scope}" for scope in MERCHANT_SCOPES]
    raise MerchantError(f"user pool {user_pool_id} has no resource server with the merchant scopes")


def _client_names(cognito: Any, user_pool_id: str) -> set[str]:
    found: set[str] = set()
    paginator = cognito.get_paginator("list_user_pool_clients")
    for page in paginator.paginate(UserPoolId=user_pool_id, PaginationConfig={"PageSize": 60}):
        found.update(client["ClientName"] for client in page.get("UserPoolClients", []))
    return found


def add_in_aws(
    cognito: Any, ssm: Any, entry: MerchantEntry, *, user_pool_id: str, registry_path: str
) -> dict[str, Any]:
    """Make the Cognito app client of ``entry``'s merchant and its registry entry under
    ``registry_path``; the client."""
    path = merchant_registry.check_path(registry_path)
    scopes = _merchant_scopes(cognito, user_pool_id)
    if client_name(entry.name) in _client_names(cognito, user_pool_id):
        raise MerchantError(f"merchant {entry.name} exists already in {user_pool_id}")
    made = cognito.create_user_pool_client(
        UserPoolId=user_pool_id,
        ClientName=client_name(entry.name),
        GenerateSecret=True,
        AllowedOAuthFlows=["client_credentials"],
        AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthScopes=scopes,
        SupportedIdentityProviders=["COGNITO"],
        AccessTokenValidity=ACCESS_TOKEN_MINUTES,
        TokenValidityUnits={"AccessToken": "minutes"},
        PreventUserExistenceErrors="ENABLED",
        EnableTokenRevocation=True,
    )["UserPoolClient"]
    try:
        merchant_registry.put_entry(ssm, path, made["ClientId"], entry)
    except (BotoCoreError, ClientError):
        # No client without its entry: a client the API would refuse is only confusing.
        cognito.delete_user_pool_client(UserPoolId=user_pool_id, ClientId=made["ClientId"])
        raise
    return {
        "name": entry.name,
        "client_id": made["ClientId"],
        "client_secret": made["ClientSecret"],
        "scopes": scopes,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cardstream merchant``."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="create a merchant: its client and registry entry")
    add.add_argument("name", help="lower-case letters, digits and dashes (e.g. acme-shop)")
    add.add_argument(
        "--records-per-second", type=float, default=1000.0, help="sustained rate (default 1000)"
    )
    add.add_argument(
        "--burst",
        type=int,
        default=5000,
        help="records at once above the rate; a batch larger than this is refused (default 5000)",
    )
    add.add_argument(
        "--aws",
        action="store_true",
        help="in the AWS deployment (credentials and region from the environment)",
    )
    add.add_argument("--user-pool-id", help="with --aws: the data stack's output UserPoolId")
    add.add_argument(
        "--registry-path", help="with --aws: the data stack's output MerchantRegistryPath"
    )
    add.add_argument("--region", help="with --aws: the deployment's region")
    add.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".cardstream"),
        help="locally: where stack.json is (default .cardstream)",
    )


def _add(args: argparse.Namespace, entry: MerchantEntry) -> dict[str, Any]:
    if args.aws:
        if not args.user_pool_id or not args.registry_path:
            raise MerchantError("--aws needs --user-pool-id and --registry-path")
        session = boto3.Session(region_name=args.region)
        return add_in_aws(
            session.client("cognito-idp"),
            session.client("ssm"),
            entry,
            user_pool_id=args.user_pool_id,
            registry_path=args.registry_path,
        )
    info = load_stack_info(args.state_dir, required=("aws_endpoint_url",))
    settings = local_aws_settings(info)
    return add_local(boto3_client("secretsmanager", settings), boto3_client("ssm", settings), entry)


def run(args: argparse.Namespace) -> int:
    """Make the merchant; print its client (id and secret) as JSON on stdout."""
    try:
        entry = MerchantEntry(
            name=args.name, records_per_second=args.records_per_second, burst=args.burst
        )
    except ValidationError as exc:
        fields = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        print(f"cardstream merchant: {fields}", file=sys.stderr)
        return 2
    try:
        client = _add(args, entry)
    except (StackInfoError, MerchantError, merchant_registry.RegistryError) as exc:
        print(f"cardstream merchant: {exc}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as exc:
        print(f"cardstream merchant: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(client, indent=2))
    return 0
