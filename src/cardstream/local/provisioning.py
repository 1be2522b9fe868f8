"""Secrets and resources for a local or compose deployment, created the way CDK would.

``cardstream up`` and the compose one-shot job (``cardstream bootstrap-aws``) both call
:func:`provision`, so the two environments cannot drift apart.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Final

from cardstream.local.aws_resources import AwsResources, create_all, put_secret
from cardstream_shared import merchant_registry
from cardstream_shared import resource_names as names
from cardstream_shared.jwt_auth import SigningKey, generate_signing_key
from cardstream_shared.merchant_registry import MerchantEntry
from cardstream_shared.pan import PanKeyring

# The client of the token ``cardstream up`` prints (the demo posts with it): the local
# stack's one merchant from the start, with the ingest-api's own default limits.
LOCAL_DEVELOPER: Final = "local-developer"
LOCAL_MERCHANTS: Final = {
    LOCAL_DEVELOPER: MerchantEntry(name=LOCAL_DEVELOPER, records_per_second=20_000, burst=40_000)
}


@dataclass(frozen=True)
class Provisioned:
    """What :func:`provision` made: resources, the signing key and the role passwords."""

    resources: AwsResources
    signing_key: SigningKey
    role_passwords: dict[str, str]


def _secret_json(client: Any, name: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(client.get_secret_value(SecretId=name)["SecretString"]))
    except client.exceptions.ResourceNotFoundException:
        return None


def provision(
    clients: dict[str, Any],
    *,
    region: str,
    shards: int,
    db_host: str,
    db_port: int,
    db_name: str = names.DB_NAME,
) -> Provisioned:
    """Create every AWS resource and secret, and the merchant registry's entries of
    :data:`LOCAL_MERCHANTS`; existing secrets are kept (idempotent)."""
    resources = create_all(clients, region=region, shards=shards)
    for client_id, entry in LOCAL_MERCHANTS.items():
        merchant_registry.put_entry(
            clients["ssm"], merchant_registry.DEFAULT_PATH, client_id, entry
        )
    sm = clients["secretsmanager"]
    # A fresh random key per environment: local and test keys never equal production keys.
    put_secret(sm, names.PAN_KEY_SECRET, PanKeyring.new_secret_string("v1"))
    existing_key = _secret_json(sm, names.JWT_SIGNING_KEY_SECRET)
    if existing_key is None:
        signing_key = generate_signing_key()
        put_secret(sm, names.JWT_SIGNING_KEY_SECRET, signing_key.to_secret_string())
    else:
        signing_key = SigningKey.from_secret_string(json.dumps(existing_key))
    passwords: dict[str, str] = {}
    for role, secret_name in names.DB_ROLE_SECRETS.items():
        current = _secret_json(sm, secret_name)
        password = str(current["password"]) if current else secrets.token_urlsafe(24)
        passwords[role] = password
        value = {
            "engine": "postgres",
            "username": role,
            "password": password,
            "host": db_host,
            "port": db_port,
            "dbname": db_name,
        }
        put_secret(sm, secret_name, json.dumps(value), overwrite=True)
    return Provisioned(resources=resources, signing_key=signing_key, role_passwords=passwords)
