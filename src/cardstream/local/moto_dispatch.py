"""moto's request path without the work it repeats on every request, and without its registry.

Profiled on the local stack's calls (small PutRecords, SQS polls, S3 puts), moto 5.2 spent
most of a request finding out which service it is for, again each time:
``DomainDispatcherApplication.get_backend_for_host`` lists moto's package folder (a ``stat``
per service, about 180) and then tries every service's URL pattern, and ``call_action``
lists the response class's methods with ``inspect.getmembers``. A host name's service and a
class's methods never change while the server runs, so :class:`Dispatcher` and
:func:`install` remember them.

moto also appends every model object it ever creates (each SQS message, S3 object version,
Kinesis record, CloudWatch data point) to a class-level list that only its
``/moto-api/data.json`` dump reads, so deleted messages and overwritten objects were never
freed and the emulator's memory grew for as long as the stack ran. :func:`install` stops
that registry; ``data.json`` then lists no model objects.
"""

from __future__ import annotations

import functools
from typing import Any

from moto.core import responses
from moto.core.common_models import BaseModel
from moto.moto_server.werkzeug_app import DomainDispatcherApplication


class Dispatcher(DomainDispatcherApplication):
    """moto's host dispatcher, remembering the backend of each host name it has seen."""

    def __init__(self, create_app: Any) -> None:
        super().__init__(create_app)
        self._backends: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        # Called under the dispatcher's lock, as moto's own method is.
        if host not in self._backends:
            self._backends[host] = super().get_backend_for_host(host)
        return self._backends[host]


def _untracked(cls: type[BaseModel], *args: Any, **kwargs: Any) -> Any:
    return super(BaseModel, cls).__new__(cls)


def install() -> None:
    """Cache each response class's method names and stop moto's model registry (idempotent)."""
    listed = responses.method_names_from_class  # type: ignore[attr-defined]
    if getattr(listed, "cache_info", None) is None:
        responses.method_names_from_class = functools.cache(listed)  # type: ignore[attr-defined]
    BaseModel.__new__ = staticmethod(_untracked)  # type: ignore[method-assign]
