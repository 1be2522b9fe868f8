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

from cardstream.local.provisioning import LOCAL_DEVELOPER
from cardstream.merchant_cmd import MerchantError, local_client
from cardstream.stack_info import StackInfoError, load_stack_info, local_aws_settings
from cardstream_shared.aws import boto3_client
from cardstream_shared.jwt_auth import SigningKey, issue_token
from cardstream_shared.resource_names import SCOPE_READ, SCOPE_WRITE

# The local stack's merchant from the start (its registry entry is made by ``cardstream up``).
DEFAULT_SUBJECT: Final = LOCAL_DEVELOPER
DEFAULT_TTL_S: Final = 3600
MAX_TTL_S: Final = 7 * 24 * 3600


def signing_key(info: dict[str, Any]) -> SigningKey:
    """The local issuer's signing key, from the Secrets Manager named in ``info``."""
    client = boto3_client("secretsmanager", local_aws_settings(info))
    name = info["jwt"]["signing_key_secret"]
    secret = client.get_secret_value(SecretId=name)
    try:
        return SigningKey.from_secret_string(secret["SecretString"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"secret {name} does not hold a signing key") from None


def mint(
    info: dict[str, Any],
    *,
    scopes: list[str],
    subject: str,
    ttl_s: int,
    client_id: str | None = None,
) -> str:
    """A token for the stack described by ``info`` (the parsed stack.json); ``client_id``
    names its client (as Cognito's client-credentials tokens do), else the subject is."""
    key = signing_key(info)
    return issue_token(
        key,
        issuer=str(info["jwt"]["issuer"]),
        audience=str(info["jwt"]["audience"]),
        subject=subject,
        scopes=scopes,
        ttl_s=ttl_s,
        extra_claims={"client_id": client_id} if client_id else None,
    )


def mint_for_client(info: dict[str, Any], name: str, *, scopes: list[str], ttl_s: int) -> str:
    """A token of merchant ``name``'s local client (``cardstream merchant add``), with its
    scopes or the ``scopes`` asked of them."""
    client = local_client(boto3_client("secretsmanager", local_aws_settings(info)), name)
    granted = list(client["scopes"])
    beyond = [scope for scope in scopes if scope not in granted]
    if beyond:
        raise MerchantError(f"client {name} does not hold {', '.join(beyond)}")
    return mint(
        info,
        scopes=scopes or granted,
        subject=str(client["client_id"]),
        ttl_s=ttl_s,
        client_id=str(client["client_id"]),
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
        default=[],
        help=f"scope to grant, repeatable (e.g. {SCOPE_WRITE}, {SCOPE_READ}); required "
        "without --client",
    )
    who = parser.add_mutually_exclusive_group()
    who.add_argument(
        "--sub", default=DEFAULT_SUBJECT, help=f"subject / client id (default {DEFAULT_SUBJECT})"
    )
    who.add_argument(
        "--client",
        metavar="NAME",
        help="a token of merchant NAME's client (cardstream merchant add NAME), with its scopes",
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
    scopes = list(dict.fromkeys(args.scope))
    if not scopes and not args.client:
        print("cardstream token: give --scope, or --client NAME", file=sys.stderr)
        return 2
    try:
        info = load_stack_info(args.state_dir, required=("aws_endpoint_url", "jwt"))
        if args.client:
            token = mint_for_client(info, args.client, scopes=scopes, ttl_s=args.ttl)
        else:
            token = mint(info, scopes=scopes, subject=args.sub, ttl_s=args.ttl)
    except (StackInfoError, MerchantError) as exc:
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
