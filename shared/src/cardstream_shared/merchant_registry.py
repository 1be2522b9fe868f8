"""The merchant registry: one entry per merchant's OAuth client, in SSM Parameter Store.

A merchant is a client of the token issuer (a Cognito app client in AWS, a client of the
local pool locally) with its own secret and scopes. The registry says which clients are
merchants and what each may send: one String parameter per client, named
``<path>/<client id>``, whose value is a :class:`MerchantEntry` as JSON. The CDK app writes
the entries of the merchants in its configuration, ``cardstream merchant add`` writes the
entry of each merchant it creates, and the ingest-api reads every entry under its path and
refuses any client that has none (operators are told apart by their own client ids).

Entries hold no secret: a client's secret stays with the token issuer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# The registry's path in the local stack; a deployment puts its environment in it
# (``/cardstream-dev/merchants``).
DEFAULT_PATH: Final = "/cardstream/merchants"

# Lower-case letters, digits and dashes: a merchant's name names its app client
# (``merchant-<name>``) and is safe in logs and metric labels.
NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9-]{0,62}$"
# SSM parameter hierarchies: a leading slash, letters, digits, ``_.-`` and slashes.
PATH_PATTERN: Final = r"^(/[A-Za-z0-9_.-]+)+$"
# Cognito app client ids are letters and digits (26 of them); the local pool's are too.
_CLIENT_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


class MerchantEntry(BaseModel):
    """What the registry knows of one merchant client.

    Attributes:
        name: the merchant's name, lower-case letters, digits and dashes.
        records_per_second: its sustained rate at the ingest-api (every record of a batch
            counts).
        burst: the records it may send at once above that rate; a batch larger than this
            is never accepted.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    records_per_second: Annotated[float, Field(gt=0, le=1_000_000)]
    burst: Annotated[int, Field(ge=1, le=10_000_000)]

    def to_parameter_value(self) -> str:
        """The parameter's value: this entry as compact JSON."""
        return self.model_dump_json()

    @classmethod
    def from_parameter_value(cls, value: str) -> MerchantEntry:
        """The entry a parameter holds; :class:`pydantic.ValidationError` if it holds none."""
        return cls.model_validate_json(value)


class RegistryError(ValueError):
    """A registry path or client id that cannot name a parameter."""


def check_path(path: str) -> str:
    """``path`` without a trailing slash, if it is an SSM parameter hierarchy."""
    path = path.rstrip("/")
    if not re.fullmatch(PATH_PATTERN, path):
        raise RegistryError(f"{path!r} is not a parameter path such as {DEFAULT_PATH}")
    return path


def parameter_name(path: str, client_id: str) -> str:
    """The name of ``client_id``'s entry under the registry ``path``."""
    if not _CLIENT_ID.fullmatch(client_id):
        raise RegistryError("a client id is letters, digits, '_' and '-' only")
    return f"{check_path(path)}/{client_id}"


def parse_parameters(
    path: str, parameters: Iterable[Mapping[str, object]]
) -> tuple[dict[str, MerchantEntry], list[str]]:
    """The entries of ``GetParametersByPath`` results, by client id, and the names of the
    parameters that hold no valid entry (their clients are not merchants: fail closed)."""
    prefix = f"{check_path(path)}/"
    entries: dict[str, MerchantEntry] = {}
    invalid: list[str] = []
    for parameter in parameters:
        name = str(parameter.get("Name", ""))
        client_id = name.removeprefix(prefix)
        if not name.startswith(prefix) or not _CLIENT_ID.fullmatch(client_id):
            invalid.append(name)
            continue
        try:
            entries[client_id] = MerchantEntry.from_parameter_value(str(parameter.get("Value")))
        except ValidationError:
            invalid.append(name)
    return entries, invalid


def put_entry(ssm: Any, path: str, client_id: str, entry: MerchantEntry) -> str:
    """Write ``client_id``'s entry under ``path`` with a boto3 SSM client (replacing an entry
    it had); the parameter's name."""
    name = parameter_name(path, client_id)
    ssm.put_parameter(
        Name=name,
        Value=entry.to_parameter_value(),
        Type="String",
        Overwrite=True,
        Description=f"merchant registry entry of {entry.name}",
    )
    return name
