"""Merchant registry entries for tests: written to the moto server's Parameter Store, where
the ingest-api reads them (the registry's real client, the real service API)."""

from __future__ import annotations

import boto3

from cardstream_shared.merchant_registry import (
    DEFAULT_PATH,
    MerchantEntry,
    parameter_name,
    put_entry,
)

# The operators' client of the tests' issuer: its tokens read every tenant and review.
OPERATORS_CLIENT = "operators"


def register(
    endpoint: str,
    *client_ids: str,
    records_per_second: float = 100_000.0,
    burst: int = 100_000,
    path: str = DEFAULT_PATH,
) -> None:
    """Give each client an entry (named after it) under ``path``."""
    ssm = boto3.client("ssm", endpoint_url=endpoint, region_name="us-east-1")
    for client_id in client_ids:
        entry = MerchantEntry(
            name=client_id.lower().replace("_", "-"),
            records_per_second=records_per_second,
            burst=burst,
        )
        put_entry(ssm, path, client_id, entry)


def unregister(endpoint: str, client_id: str, *, path: str = DEFAULT_PATH) -> None:
    """Remove ``client_id``'s entry."""
    ssm = boto3.client("ssm", endpoint_url=endpoint, region_name="us-east-1")
    ssm.delete_parameter(Name=parameter_name(path, client_id))
