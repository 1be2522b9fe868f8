"""AWS client construction: one place that sets endpoints, retries and timeouts.

botocore's ``standard`` retry mode retries throttling and transient errors with jittered
backoff and a retry quota; it does not retry the per-record failures that ``PutRecords``
reports inside a 200 response, which the producer handles itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.config import Config

from cardstream_shared.settings import ServiceSettings

if TYPE_CHECKING:
    from cardstream_shared.response_parsers import ShapeReader


def config_options(settings: ServiceSettings, **overrides: Any) -> dict[str, Any]:
    """Client configuration: standard retries, bounded timeouts, a connection pool."""
    options: dict[str, Any] = {
        "region_name": settings.aws_region,
        "retries": {"mode": "standard", "max_attempts": settings.aws_max_attempts},
        "connect_timeout": settings.aws_connect_timeout_s,
        "read_timeout": settings.aws_read_timeout_s,
        "max_pool_connections": 50,
    }
    options.update(overrides)
    return options


def client_kwargs(settings: ServiceSettings, config: Config) -> dict[str, Any]:
    """Keyword arguments for ``boto3.client`` or aiobotocore's ``session.create_client``."""
    kwargs: dict[str, Any] = {"region_name": settings.aws_region, "config": config}
    if settings.aws_endpoint_url:
        kwargs["endpoint_url"] = settings.aws_endpoint_url
    return kwargs


def boto3_client(service: str, settings: ServiceSettings, **config_overrides: Any) -> Any:
    """A synchronous boto3 client for ``service`` (command-line tools, start-up steps)."""
    import boto3

    config = Config(**config_options(settings, **config_overrides))
    factory: Any = boto3.client
    return factory(service, **client_kwargs(settings, config))


def aio_client(
    service: str,
    settings: ServiceSettings,
    *,
    readers: Mapping[str, ShapeReader] | None = None,
    **config_overrides: Any,
) -> Any:
    """An aiobotocore client context manager for ``service``: ``async with aio_client(...)``.

    ``readers`` (output shape name -> reader) read those answers on a faster path than
    botocore's (:mod:`cardstream_shared.response_parsers`).
    """
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    config = AioConfig(**config_options(settings, **config_overrides))
    session: Any = get_session()
    if readers:
        from cardstream_shared.response_parsers import register_readers

        register_readers(session, readers)
    return session.create_client(service, **client_kwargs(settings, config))
