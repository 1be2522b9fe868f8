"""``cardstream token``: print a JWT that the local stack's ingest-api accepts.

The local stack is its own issuer: ``cardstream up`` keeps the RSA signing key in Secrets
Manager (the moto server) and publishes its public half as the JWKS the API verifies
against. This command reads where those are from ``stack.json``, fetches the key and signs
a token with :func:`cardstream_shared.jwt_auth.issue_token`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from cardstream.stack_info import StackInfoError, load_stack_info, use_local_aws_credentials
from cardstream_shared.aws import boto3_client
from cardstream_shared.jwt_auth import SigningKey, issue_token
from cardstream_shared.resource_names import SCOPE_READ, SCOPE_WRITE
from cardstream_shared.settings import ServiceSettings

DEFAULT_SUBJECT: Final = "local-cli"
DEFAULT_TTL_S: Final = 3600
MAX_TTL_S: Final = 7 * 24 * 3600


def signing_key(info: dict[str, Any]) -> SigningKey:
    """The local issuer's signing key, from the Secrets Manager named in ``info``."""
    settings = ServiceSettings(
        environment="local",
        aws_region=str(info.get("aws_region") or "us-east-1"),
        aws_endpoint_url=str(info["aws_endpoint_url"]),
        aws_max_attempts=2,
    )
    use_local_aws_credentials()
    client = boto3_client("secretsmanager", settings)
    name = info["jwt"]["signing_key_secret"]
    secret = client.get_secret_value(SecretId=name)
    try:
        return SigningKey.from_secret_string(secret["SecretString"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"secret {name} does not hold a signing key") from None


def mint(info: dict[str, Any], *, scopes: list[str], subject: str, ttl_s: int) -> str:
    """A token for the stack described by ``info`` (the parsed stack.json)."""
    key = signing_key(info)
    return issue_token(
        key,
        issuer=str(info["jwt"]["issuer"]),
        audience=str(info["jwt"]["audience"]),
        subject=subject,
        scopes=scopes,
        ttl_s=ttl_s,
    )


def _ttl(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_TTL_S:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_TTL_S} seconds")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cardstream token``."""
    parser.add_argument(
        "--scope",
        action="append",
        required=True,
        help=f"scope to grant, repeatable (e.g. {SCOPE_WRITE}, {SCOPE_READ})",
    )
    parser.add_argument(
        "--sub", default=DEFAULT_SUBJECT, help=f"subject / client id (default {DEFAULT_SUBJECT})"
    )
    parser.add_argument(
        "--ttl", type=_ttl, default=DEFAULT_TTL_S, help="lifetime in seconds (default 3600)"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".cardstream"),
        help="where stack.json is (default .cardstream)",
    )


def run(args: argparse.Namespace) -> int:
    """Print the token on stdout (and nothing else, so ``$(cardstream token ...)`` works)."""
    try:
        info = load_stack_info(args.state_dir, required=("aws_endpoint_url", "jwt"))
        token = mint(info, scopes=list(dict.fromkeys(args.scope)), subject=args.sub, ttl_s=args.ttl)
    except StackInfoError as exc:
        print(f"cardstream token: {exc}", file=sys.stderr)
        return 2
    except (KeyError, TypeError) as exc:
        print(f"cardstream token: stack.json lacks jwt setting {exc}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError, ValueError) as exc:
        # The message names the secret and the error code, never the key material.
        print(f"cardstream token: cannot read the signing key: {exc}", file=sys.stderr)
        return 1
    print(token)
    return 0
