"""Typed settings base for every cardstream service.

Each service subclasses :class:`ServiceSettings` with its own ``env_prefix`` (``INGEST_``,
``WRITER_``, ``LOADER_``, ``DASHBOARD_``). Settings are validated at start-up by
:func:`load_settings`; a service with bad configuration refuses to start and names the
variable that is wrong, without echoing its value.

Configuration fails closed: the environment has no default (the local stack, compose and
the tests name theirs), and outside ``local`` and ``test`` a placeholder secret is refused,
also as the password of a URL, the issuer's key set is fetched over https only, and a
database connection verifies the server's certificate and name (``verify-full``) against
a CA bundle, by default the Amazon RDS bundle shipped in this package.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cardstream_shared.bearer_auth import BearerAuthenticator, RefusalError
from cardstream_shared.jwt_auth import JwksCache, TokenVerifier

Environment = Literal["local", "test", "dev", "staging", "prod"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
# libpq's sslmode values, which asyncpg reads from the URL.
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

# The environments of a developer's machine and of the tests, where the fail-closed rules
# below do not apply.
LOCAL_ENVIRONMENTS: Final = frozenset({"local", "test"})
_PLACEHOLDERS = frozenset({"", "changeme", "changethis", "secret", "password", "example"})
# Amazon RDS's certificate authorities (every region), shipped beside this module;
# scripts/rds-ca-bundle.sh writes it.
RDS_CA_BUNDLE: Final = Path(__file__).with_name("rds-ca-bundle.pem")

S = TypeVar("S", bound="ServiceSettings")


class ServiceSettings(BaseSettings):
    """Fields every service has: where it runs, how it logs, how it reaches AWS."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, validate_default=True)

    # No default: a deployment that forgot it must not run with the local stack's rules.
    environment: Environment
    log_level: LogLevel = "INFO"
    aws_region: str = Field(default="us-east-1", min_length=1)
    # Set locally to the moto server; unset in AWS so botocore uses the regional endpoint.
    aws_endpoint_url: str | None = None
    aws_max_attempts: int = Field(default=5, ge=1, le=20)
    aws_connect_timeout_s: float = Field(default=2.0, gt=0)
    aws_read_timeout_s: float = Field(default=10.0, gt=0)

    @property
    def is_local(self) -> bool:
        """True on a developer's machine and in the tests (``local``, ``test``)."""
        return self.environment in LOCAL_ENVIRONMENTS

    @model_validator(mode="after")
    def _enforce_non_default_secrets(self) -> ServiceSettings:
        # Outside a developer's machine a placeholder secret is a deployment mistake, also
        # as the password of a URL (postgresql://user:changeme@host/db).
        if self.is_local:
            return self
        for name in type(self).model_fields:
            value = getattr(self, name)
            text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            placeholder = isinstance(value, SecretStr) and text.lower() in _PLACEHOLDERS
            if "://" in text:
                password = _url_password(text)
                placeholder |= password is not None and password.lower() in _PLACEHOLDERS
            if placeholder:
                raise ValueError(
                    f"{self.env_name(name)} holds a placeholder secret in environment "
                    f"{self.environment}"
                )
        return self

    @classmethod
    def env_name(cls, field: str) -> str:
        """Environment variable that sets ``field``."""
        prefix = str(cls.model_config.get("env_prefix", ""))
        return f"{prefix}{field}".upper()


def _url_password(url: str) -> str | None:
    """The password component of ``url``, decoded; None when it has none."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return None if password is None else unquote(password)


def describe_errors(cls: type[ServiceSettings], error: ValidationError) -> list[str]:
    """One line per invalid setting, naming its environment variable, never its value."""
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        field = str(item["loc"][0]) if item["loc"] else ""
        name = cls.env_name(field) if field else cls.__name__
        lines.append(f"{name}: {item['msg']}")
    return lines


def load_settings(cls: type[S]) -> S:
    """Build ``cls`` from the environment or exit with status 2 naming each bad variable."""
    try:
        return cls()
    except ValidationError as error:
        print("invalid configuration, refusing to start:", file=sys.stderr)
        for line in describe_errors(cls, error):
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(2) from None


class TokenVerifierSettings(ServiceSettings):
    """Settings of a service that verifies bearer tokens (docs/security.md): one issuer, one
    audience, one asymmetric algorithm family, keys from the issuer's JWKS."""

    jwt_issuer: str = Field(min_length=1)
    jwt_audience: str = Field(min_length=1)
    jwks_url: str = Field(pattern=r"^(file|https?)://")
    jwt_algorithms: tuple[str, ...] = ("RS256",)
    # Amazon Cognito access tokens carry the app client in ``client_id`` instead of ``aud``.
    jwt_audience_claim: Literal["aud", "client_id"] = "aud"
    jwt_scope_prefix: str = ""
    jwt_leeway_s: int = Field(default=30, ge=0, le=300)
    jwks_ttl_s: float = Field(default=300.0, gt=0)
    jwks_min_refresh_interval_s: float = Field(default=30.0, ge=0)
    # Verified tokens are cached (bounded) so a request does not pay an RSA verification.
    token_cache_size: int = Field(default=10_000, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _keys_over_https(self) -> TokenVerifierSettings:
        # A key set read over plain http (or from a file) can be replaced on the way, and
        # with it every token the service accepts.
        if not self.is_local and not self.jwks_url.startswith("https://"):
            raise ValueError(
                f"{self.env_name('jwks_url')} must be an https URL in environment "
                f"{self.environment}"
            )
        return self

    def token_verifier(
        self, also_accepts: Callable[[str], Awaitable[bool]] | None = None
    ) -> TokenVerifier:
        """A verifier configured from these settings, with its own JWKS cache;
        ``also_accepts`` as :class:`~cardstream_shared.jwt_auth.TokenVerifier` has it."""
        return TokenVerifier(
            issuer=self.jwt_issuer,
            audience=self.jwt_audience,
            jwks=JwksCache(
                self.jwks_url,
                ttl_s=self.jwks_ttl_s,
                min_refresh_interval_s=self.jwks_min_refresh_interval_s,
            ),
            algorithms=self.jwt_algorithms,
            leeway_s=self.jwt_leeway_s,
            audience_claim=self.jwt_audience_claim,
            scope_prefix=self.jwt_scope_prefix,
            also_accepts=also_accepts,
        )

    def bearer_authenticator(
        self,
        audit_logger: logging.Logger,
        on_refusal: Callable[[RefusalError], None] | None = None,
        also_accepts: Callable[[str], Awaitable[bool]] | None = None,
    ) -> BearerAuthenticator:
        """The service's bearer authentication: a verifier of its own, cached verifications
        living at most as long as the key set (``jwks_ttl_s``)."""
        return BearerAuthenticator(
            self.token_verifier(also_accepts),
            cache_size=self.token_cache_size,
            max_age_s=self.jwks_ttl_s,
            audit_logger=audit_logger,
            on_refusal=on_refusal,
        )


class DatabaseSettings(ServiceSettings):
    """Settings of a service that connects to PostgreSQL as its own role
    (:mod:`cardstream_shared.database`)."""

    # The role's RDS-style secret (each service names its own); DATABASE_URL overrides it.
    database_secret_id: str | None = None
    database_url: SecretStr | None = None
    # Set on the URL either way, replacing an sslmode the URL names.
    database_sslmode: SslMode | None = None
    # The certificate authorities a verify-ca or verify-full connection trusts.
    database_sslrootcert: Path = RDS_CA_BUNDLE

    @model_validator(mode="after")
    def _verified_tls(self) -> DatabaseSettings:
        # Outside a developer's machine the connection is encrypted and the server proves
        # its name with a certificate from a known authority: no one on the path can read
        # or answer in its place.
        if self.is_local:
            return self
        if self.database_sslmode != "verify-full":
            raise ValueError(
                f"{self.env_name('database_sslmode')} must be verify-full in environment "
                f"{self.environment}"
            )
        if not self.database_sslrootcert.is_file():
            raise ValueError(f"{self.env_name('database_sslrootcert')} names no readable file")
        return self
