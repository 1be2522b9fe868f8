"""ingest-api configuration: every ``INGEST_*`` environment variable, typed and validated."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from cardstream_shared import merchant_registry
from cardstream_shared import resource_names as names
from cardstream_shared.settings import DatabaseSettings, TokenVerifierSettings

# Kinesis PutRecords limits (AWS API reference): 500 records and 5 MiB per call, 1 MiB per
# record including its partition key.
KINESIS_MAX_RECORDS_PER_CALL = 500
KINESIS_MAX_BYTES_PER_CALL = 5 * 1024 * 1024


class IngestSettings(TokenVerifierSettings, DatabaseSettings):
    """Settings of one ingest-api process (prefix ``INGEST_``)."""

    model_config = SettingsConfigDict(
        env_prefix="INGEST_", extra="ignore", frozen=True, validate_default=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # HTTPS with a certificate made at start-up (behind the ALB in AWS); plain HTTP locally.
    tls_self_signed: bool = False
    stream_name: str = Field(default=names.STREAM_NAME, min_length=1)
    pan_key_secret_id: str = Field(default=names.PAN_KEY_SECRET, min_length=1)

    # Reads (GET /v1/transactions/{trans_num}) use the read-only api role.
    database_secret_id: str | None = names.DB_API_SECRET
    pool_min_size: int = Field(default=0, ge=0, le=100)
    pool_max_size: int = Field(default=5, ge=1, le=100)
    db_statement_timeout_s: float = Field(default=2.0, gt=0, le=60)

    # Who may call (ingest_api.merchants): the clients with an entry under this Parameter
    # Store path are merchants, each with its own rate limit; the operators' clients read
    # and review. Comma-separated client ids.
    merchant_registry_path: str = Field(
        default=merchant_registry.DEFAULT_PATH, pattern=merchant_registry.PATH_PATTERN
    )
    merchant_registry_refresh_s: float = Field(default=60.0, gt=0, le=3600)
    # An unknown client makes the registry be read again, at most this often.
    merchant_registry_miss_refresh_s: float = Field(default=5.0, gt=0, le=3600)
    operator_client_ids: str = ""

    # Limits (OWASP API4): every one is answered before any work is done for the request.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_records_per_request: int = Field(default=5_000, ge=1, le=100_000)
    # For callers without limits of their own (operators); a merchant's are in its entry.
    rate_limit_records_per_s: float = Field(default=20_000.0, gt=0)
    rate_limit_burst: int = Field(default=40_000, ge=1)
    rate_limit_max_clients: int = Field(default=100_000, ge=1)
    # The alert routes: requests per second per caller (its token's subject), and burst.
    alerts_rate_limit_per_s: float = Field(default=20.0, gt=0)
    alerts_rate_limit_burst: int = Field(default=40, ge=1)

    # Kinesis producer (docs/architecture.md, hop 1).
    put_deadline_s: float = Field(default=5.0, gt=0, le=60)
    put_backoff_base_s: float = Field(default=0.05, gt=0)
    put_backoff_max_s: float = Field(default=1.0, gt=0)
    put_attempt_timeout_s: float = Field(default=3.0, gt=0)
    coalesce_window_ms: float = Field(default=4.0, ge=0, le=100)
    coalesce_max_records: int = Field(default=KINESIS_MAX_RECORDS_PER_CALL, ge=1, le=500)
    coalesce_max_in_flight: int = Field(default=2, ge=1, le=64)
    retry_after_s: int = Field(default=2, ge=1, le=3600)

    health_check_cache_s: float = Field(default=5.0, ge=0)
    shutdown_grace_s: int = Field(default=20, ge=1, le=3600)
    access_log: bool = False

    @property
    def operator_clients(self) -> frozenset[str]:
        """The operators' client ids."""
        return frozenset(c.strip() for c in self.operator_client_ids.split(",") if c.strip())

    @model_validator(mode="after")
    def _consistent_limits(self) -> IngestSettings:
        if self.rate_limit_burst < self.max_records_per_request:
            # A full-size batch could otherwise never pass the rate limiter.
            raise ValueError("rate_limit_burst must be >= max_records_per_request")
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must be <= pool_max_size")
        if self.put_backoff_base_s > self.put_backoff_max_s:
            raise ValueError("put_backoff_base_s must be <= put_backoff_max_s")
        return self
