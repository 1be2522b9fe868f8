"""stream-writer settings, read from ``WRITER_*`` environment variables.

Every threshold the reliability tests shrink (lease failover, flush size and age, poll
interval) is a setting. The flush defaults follow the original design (1 MB or 2 s).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from cardstream_shared import resource_names as names
from cardstream_shared.settings import ServiceSettings

InitialPosition = Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]


def _default_worker_id() -> str:
    # Unique per process: a restarted task must not mistake its predecessor's leases for its own.
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class WriterSettings(ServiceSettings):
    """Configuration of one stream-writer worker process."""

    model_config = SettingsConfigDict(env_prefix="WRITER_", extra="ignore", frozen=True)

    stream_name: str = Field(default=names.STREAM_NAME, min_length=1)
    lease_table: str = Field(default=names.LEASE_TABLE, min_length=1)
    # No default: bucket names are global to S3, and a writer that fell back on a fixed name
    # would send card transactions to whichever account owns it. Each deployment names its
    # own (the CDK app, compose.yaml, the local stack).
    bucket: str = Field(min_length=1)
    worker_id: str = Field(default_factory=_default_worker_id, min_length=1, max_length=200)
    health_host: str = "127.0.0.1"
    health_port: int = Field(default=8082, ge=0, le=65535)

    # Batching: whichever threshold is reached first flushes the shard's buffer.
    flush_max_bytes: int = Field(default=1_000_000, ge=1024, le=64_000_000)
    flush_max_records: int = Field(default=50_000, ge=1, le=1_000_000)
    flush_max_age_s: float = Field(default=2.0, gt=0, le=900)
    # Level 6 compresses generated envelopes only a little better than level 3, for about
    # twice the CPU a record (figures in docs/benchmarks.md): too much of the writer's budget.
    gzip_level: int = Field(default=3, ge=1, le=9)

    # Leases: a dead worker's shards are taken over within failover_s of its last renewal.
    failover_s: float = Field(default=10.0, gt=0, le=3600)
    lease_renew_interval_s: float | None = Field(default=None, gt=0)
    lease_take_interval_s: float | None = Field(default=None, gt=0)
    shard_sync_interval_s: float = Field(default=10.0, gt=0, le=3600)

    # Reading: Kinesis allows 5 GetRecords calls per second per shard.
    poll_interval_s: float = Field(default=0.25, gt=0, le=60)
    min_read_interval_s: float = Field(default=0.2, ge=0.2, le=60)
    get_records_limit: int = Field(default=10_000, ge=1, le=10_000)
    throttle_backoff_max_s: float = Field(default=5.0, gt=0, le=300)
    initial_position: InitialPosition = "TRIM_HORIZON"
    initial_timestamp: dt.datetime | None = None

    shutdown_timeout_s: float = Field(default=30.0, gt=0, le=600)

    @property
    def renew_interval_s(self) -> float:
        """How often held leases are renewed: three chances before they would expire."""
        return self.lease_renew_interval_s or self.failover_s / 3

    @property
    def take_interval_s(self) -> float:
        """How often the table is scanned to take or steal leases."""
        return self.lease_take_interval_s or self.failover_s / 5

    @property
    def lease_expiry_s(self) -> float:
        """How long a lease's counter must stand still, as observed, before it is expired.

        A renewal is seen up to one scan late and the scan that takes the lease is timed
        for the expiry, so a dead worker's leases move within failover_s of its last renewal.
        """
        return self.failover_s - self.take_interval_s

    @model_validator(mode="after")
    def _coherent(self) -> WriterSettings:
        # A live lease is seen moving at least every renew + take interval; it must not look
        # expired in between.
        if self.renew_interval_s + self.take_interval_s >= self.lease_expiry_s:
            raise ValueError(
                "failover_s must exceed lease_renew_interval_s + 2 * lease_take_interval_s"
            )
        if self.initial_position == "AT_TIMESTAMP" and self.initial_timestamp is None:
            raise ValueError("initial_timestamp is required when initial_position is AT_TIMESTAMP")
        return self
