"""``/healthz`` (alive), ``/readyz`` (dependencies reachable) and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from cardstream_shared.metrics import exposition
from ingest_api.models import Health
from ingest_api.problems import ProblemError
from ingest_api.runtime import Runtime

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    """Answers as long as the event loop runs; it checks no dependency on purpose, so a
    Kinesis outage does not get healthy tasks killed and restarted."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, summary="Dependencies are reachable")
async def readyz(request: Request) -> Health:
    """Kinesis (DescribeStreamSummary), the PAN key secret and the issuer's keys."""
    runtime: Runtime = request.app.state.runtime
    checks = await runtime.readiness.check()
    if any(value != "ok" for value in checks.values()):
        raise ProblemError(
            503, "not-ready", "a dependency is unreachable", extra={"checks": checks}
        )
    return Health(status="ready", checks=checks)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """The text exposition format of every ``cardstream_ingest_*`` metric."""
    runtime: Runtime = request.app.state.runtime
    body, content_type = exposition(runtime.metrics.registry)
    return Response(body, media_type=content_type)
