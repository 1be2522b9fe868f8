"""db-loader configuration: every ``LOADER_*`` environment variable, typed and validated."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from cardstream_shared import resource_names as names
from cardstream_shared.settings import DatabaseSettings


class LoaderSettings(DatabaseSettings):
    """Settings of one db-loader process (prefix ``LOADER_``)."""

    model_config = SettingsConfigDict(
        env_prefix="LOADER_", extra="ignore", frozen=True, validate_default=True
    )

    queue_url: str = Field(min_length=1)
    # The loader role's RDS-style secret; LOADER_DATABASE_URL overrides it (tests, compose).
    database_secret_id: str | None = names.DB_LOADER_SECRET
    pool_min_size: int = Field(default=1, ge=0, le=100)
    pool_max_size: int = Field(default=4, ge=1, le=100)
    statement_timeout_s: float = Field(default=120.0, gt=0)

    health_host: str = "127.0.0.1"
    health_port: int = Field(default=8082, ge=0, le=65535)

    # SQS consumption (docs/architecture.md, hop 5).
    concurrency: int = Field(default=2, ge=1, le=64)
    max_messages: int = Field(default=10, ge=1, le=10)
    wait_time_s: int = Field(default=20, ge=0, le=20)
    # Pause after an empty receive when not long polling (wait_time_s = 0). The local stack
    # short-polls: moto serves one request at a time, so a 20 s long poll there would stall
    # every other client of the emulator (Kinesis, S3, DynamoDB) for 20 s.
    empty_receive_pause_s: float = Field(default=0.2, ge=0, le=20)
    visibility_timeout_s: int = Field(default=60, ge=1, le=43_200)
    # How often the visibility of a message being worked on is extended; default a third of
    # the timeout, so two extensions can fail before the message reappears.
    heartbeat_interval_s: float | None = Field(default=None, gt=0)
    # The queue's redrive maxReceiveCount: the receive that reaches it is the last one.
    max_receive_count: int = Field(default=names.MAX_RECEIVE_COUNT, ge=1, le=1000)
    retry_delay_s: float = Field(default=1.0, ge=0)

    # Poison-object bounds (docs/reliability.md F10).
    max_object_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    max_decompressed_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)
    max_line_bytes: int = Field(default=1024 * 1024, ge=64)

    # Processes that decode and validate objects (CPU work), so that Python and PostgreSQL
    # run in parallel; 0 runs them on a thread of the loader process instead.
    prepare_processes: int = Field(default=1, ge=0, le=32)

    shutdown_grace_s: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> LoaderSettings:
        if self.database_url is None and not self.database_secret_id:
            raise ValueError("set database_secret_id or database_url")
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must be <= pool_max_size")
        if self.heartbeat_interval_s is not None and (
            self.heartbeat_interval_s >= self.visibility_timeout_s
        ):
            raise ValueError("heartbeat_interval_s must be shorter than visibility_timeout_s")
        return self

    @property
    def heartbeat_s(self) -> float:
        """Seconds between visibility extensions of a message in progress."""
        if self.heartbeat_interval_s is not None:
            return self.heartbeat_interval_s
        return self.visibility_timeout_s / 3
