"""What a running ingest-api holds: clients, keyring, merchant registry, producer, limiters,
reader.

Built once per process in the app's lifespan and torn down in reverse order on shutdown,
so the producer is flushed before the Kinesis client closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cardstream_shared.aws import aio_client
from cardstream_shared.bearer_auth import BearerAuthenticator
from cardstream_shared.jwt_auth import JwksCache
from cardstream_shared.pan import PanKeyring
from ingest_api import kinesis_codec
from ingest_api.ingest import Ingestor
from ingest_api.kinesis_producer import KinesisProducer
from ingest_api.merchants import MerchantRegistry
from ingest_api.metrics import IngestMetrics
from ingest_api.rate_limit import TokenBucketLimiter
from ingest_api.reads import TransactionReader
from ingest_api.settings import IngestSettings

logger = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """A dependency the service cannot run without is missing (the message says which)."""


@dataclass
class Runtime:
    """The per-process objects the routes use."""

    settings: IngestSettings
    metrics: IngestMetrics
    kinesis: Any
    secrets: Any
    authenticator: BearerAuthenticator
    jwks: JwksCache
    merchants: MerchantRegistry
    producer: KinesisProducer
    ingestor: Ingestor
    limiter: TokenBucketLimiter
    alert_limiter: TokenBucketLimiter
    reader: TransactionReader
    readiness: Readiness


class Readiness:
    """``/readyz``: the stream, the secrets, the issuer's keys and the merchant registry are
    reachable.

    Results are cached briefly so frequent probes from a load balancer do not turn into a
    stream of AWS calls.
    """

    def __init__(
        self,
        settings: IngestSettings,
        *,
        kinesis: Any,
        secrets: Any,
        jwks: JwksCache,
        merchants: MerchantRegistry,
    ) -> None:
        self._settings = settings
        self._kinesis = kinesis
        self._secrets = secrets
        self._jwks = jwks
        self._merchants = merchants
        self._checked_at = float("-inf")
        self._result: dict[str, str] = {}
        self._lock = asyncio.Lock()

    async def check(self) -> dict[str, str]:
        """Each dependency mapped to ``ok`` or the reason it is not."""
        async with self._lock:
            if time.monotonic() - self._checked_at < self._settings.health_check_cache_s:
                return self._result
            kinesis, secrets, jwks = await asyncio.gather(
                self._check_stream(), self._check_secret(), self._check_jwks()
            )
            self._result = {
                "kinesis": kinesis,
                "secrets": secrets,
                "jwks": jwks,
                "merchant_registry": "ok" if self._merchants.healthy else "unreachable",
            }
            self._checked_at = time.monotonic()
            return self._result

    async def _check_stream(self) -> str:
        try:
            async with asyncio.timeout(self._settings.aws_connect_timeout_s + 1):
                summary = await self._kinesis.describe_stream_summary(
                    StreamName=self._settings.stream_name
                )
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            return f"unreachable: {type(exc).__name__}"
        status = str(summary["StreamDescriptionSummary"]["StreamStatus"])
        # Records can be written while a stream is ACTIVE or UPDATING (resharding).
        return "ok" if status in ("ACTIVE", "UPDATING") else f"stream is {status}"

    async def _check_secret(self) -> str:
        try:
            async with asyncio.timeout(self._settings.aws_connect_timeout_s + 1):
                await self._secrets.describe_secret(SecretId=self._settings.pan_key_secret_id)
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            return f"unreachable: {type(exc).__name__}"
        return "ok"

    async def _check_jwks(self) -> str:
        return "ok" if await self._jwks.ready() else "unreachable"


async def _load_keyring(secrets: Any, secret_id: str) -> PanKeyring:
    try:
        response = await secrets.get_secret_value(SecretId=secret_id)
    except (ClientError, BotoCoreError) as exc:
        raise StartupError(
            f"PAN key secret {secret_id!r} cannot be read: {type(exc).__name__}"
        ) from None
    try:
        return PanKeyring.from_secret_string(str(response["SecretString"]))
    except ValueError as exc:
        raise StartupError(str(exc)) from None


@contextlib.asynccontextmanager
async def open_runtime(
    settings: IngestSettings,
    *,
    metrics: IngestMetrics,
    kinesis_client: Any | None = None,
    ssm_client: Any | None = None,
) -> AsyncIterator[Runtime]:
    """Open every client, load the PAN keyring and the merchant registry, and close it all
    again (flushing first).

    ``kinesis_client`` and ``ssm_client`` replace the real clients; tests use them only to
    inject faults.
    """
    async with contextlib.AsyncExitStack() as stack:
        if kinesis_client is None:
            kinesis_client = await stack.enter_async_context(kinesis_codec.kinesis_client(settings))
        secrets = await stack.enter_async_context(aio_client("secretsmanager", settings))
        keyring = await _load_keyring(secrets, settings.pan_key_secret_id)
        if ssm_client is None:
            ssm_client = await stack.enter_async_context(aio_client("ssm", settings))
        merchants = MerchantRegistry(
            ssm_client,
            settings.merchant_registry_path,
            refresh_interval_s=settings.merchant_registry_refresh_s,
            miss_refresh_interval_s=settings.merchant_registry_miss_refresh_s,
            timeout_s=settings.aws_connect_timeout_s + settings.aws_read_timeout_s,
        )
        # Read before the first request; a registry that cannot be read leaves every write
        # refused until a later read succeeds.
        await stack.enter_async_context(merchants.refreshing())
        operators = settings.operator_clients

        async def accepted_audience(client_id: str) -> bool:
            # A registered merchant is an audience, also one created after deployment: an
            # unknown client reads the registry again (RegistryUnavailableError: 503).
            return client_id in operators or await merchants.lookup(client_id) is not None

        authenticator = settings.bearer_authenticator(
            logging.getLogger("ingest_api.audit"),
            on_refusal=lambda refusal: metrics.auth_refusals.labels(
                status=str(refusal.status)
            ).inc(),
            also_accepts=accepted_audience,
        )
        producer = KinesisProducer(
            kinesis_client,
            settings.stream_name,
            metrics=metrics,
            deadline_s=settings.put_deadline_s,
            backoff_base_s=settings.put_backoff_base_s,
            backoff_max_s=settings.put_backoff_max_s,
            attempt_timeout_s=settings.put_attempt_timeout_s,
            coalesce_window_s=settings.coalesce_window_ms / 1000,
            coalesce_max_records=settings.coalesce_max_records,
            coalesce_max_in_flight=settings.coalesce_max_in_flight,
        )
        reader = TransactionReader(settings, secrets)
        stack.push_async_callback(reader.close)
        # Registered last so it runs first: flush while the Kinesis client is still open.
        stack.push_async_callback(producer.close)
        logger.info(
            "ingest-api ready",
            extra={"stream": settings.stream_name, "pan_key_version": keyring.current},
        )
        yield Runtime(
            settings=settings,
            metrics=metrics,
            kinesis=kinesis_client,
            secrets=secrets,
            authenticator=authenticator,
            jwks=authenticator.verifier.jwks,
            merchants=merchants,
            producer=producer,
            ingestor=Ingestor(keyring=keyring, producer=producer, metrics=metrics),
            limiter=TokenBucketLimiter(
                rate_per_s=settings.rate_limit_records_per_s,
                burst=settings.rate_limit_burst,
                max_clients=settings.rate_limit_max_clients,
            ),
            alert_limiter=TokenBucketLimiter(
                rate_per_s=settings.alerts_rate_limit_per_s,
                burst=settings.alerts_rate_limit_burst,
                max_clients=settings.rate_limit_max_clients,
            ),
            reader=reader,
            readiness=Readiness(
                settings,
                kinesis=kinesis_client,
                secrets=secrets,
                jwks=authenticator.verifier.jwks,
                merchants=merchants,
            ),
        )
