"""An HTTP proxy between the services and the local AWS emulator that fails calls as AWS does.

The chaos soak (``bench/soak.py``) and the fault tests point the services' AWS endpoint here;
every call is forwarded to the emulator unchanged, except during a *burst*, when a fraction
of the calls AWS is known to refuse under load are answered by the proxy instead:

- Kinesis ``PutRecords``, ``PutRecord`` and ``GetRecords``: HTTP 400
  ``ProvisionedThroughputExceededException``, what a shard over its write (1 MiB/s, 1,000
  records/s) or read (5 calls/s, 2 MiB/s) limit answers.
- S3 ``PutObject`` and ``GetObject``: HTTP 503 ``SlowDown`` or 500 ``InternalError``, what
  S3 answers while it scales a prefix or when a node fails. Half of the refused puts are
  refused *after* the emulator stored the object, as when S3 wrote the object but the
  answer was lost: the writer's retry must then find the object there (its conditional put
  answers 412) rather than write it twice.

Which calls fail is drawn from a seeded random generator, so a run can be replayed.

The proxy also keeps a journal of the writes it answered (S3 object puts and deletes,
DynamoDB item writes), in the order it answered them: which service and operation, the
status and AWS error code, whether the proxy injected the answer, and a detail (the object
key of an S3 call, written ``bucket/key``; the update expression of a DynamoDB write). A
test reads it to see what a process attempted and what AWS told it, e.g. in which order
objects were written, or which write of a fenced worker was refused. Reads are not
journaled, so a long run's journal holds its writes, not its polls.

Control routes (``/_fault_proxy/...`` cannot clash with AWS: S3 bucket names have no ``_``):

- ``POST /_fault_proxy/burst`` ``{"seconds": 10, "kinesis": 0.5, "s3": 0.3}`` starts a burst;
- ``GET /_fault_proxy/stats`` counts forwarded and injected answers;
- ``GET /_fault_proxy/journal?since=N`` journal entries numbered ``N`` and later.

Run as ``python -m cardstream.local.fault_proxy --target URL --port N [--seed S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import re
import signal
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any, Final
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from yarl import URL

logger = logging.getLogger(__name__)

CONTROL_PREFIX: Final = "/_fault_proxy/"
JOURNAL_LIMIT: Final = 200_000
# Hop-by-hop headers (RFC 9110 section 7.6.1) and those the HTTP libraries set themselves.
_NOT_FORWARDED: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "host",
        "content-length",
    }
)
# The service name in a SigV4 credential scope: Credential=KEY/DATE/REGION/SERVICE/aws4_request.
# Headers aiohttp's client would add on its own.
_AUTO_HEADERS: Final = ("Content-Type", "Accept", "Accept-Encoding", "User-Agent")
# aiohttp's server writes its own.
_SET_BY_SERVER: Final = frozenset({"date", "server"})
_SCOPE_SERVICE: Final = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")
_S3_ERROR_CODE: Final = re.compile(rb"<Code>([^<]+)</Code>")

THROTTLED_KINESIS: Final = frozenset({"PutRecords", "PutRecord", "GetRecords"})
FAILED_S3: Final = frozenset({"PutObject", "GetObject"})
JOURNALED: Final = frozenset(
    {
        ("s3", "PutObject"),
        ("s3", "DeleteObject"),
        ("dynamodb", "UpdateItem"),
        ("dynamodb", "PutItem"),
        ("dynamodb", "DeleteItem"),
    }
)


@dataclass(frozen=True, slots=True)
class Call:
    """What a request is, as far as faults and the journal care."""

    service: str
    operation: str
    detail: str | None


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One answered call, numbered in the order the proxy answered."""

    n: int
    service: str
    operation: str
    status: int
    error: str | None
    injected: bool
    detail: str | None


def classify(method: str, path: str, headers: Any, body: bytes) -> Call:
    """The AWS service and operation of a request (from its signature and protocol)."""
    scope = _SCOPE_SERVICE.search(headers.get("Authorization", ""))
    service = scope.group(1) if scope else "unknown"
    target = headers.get("X-Amz-Target")
    if target:
        operation = target.rsplit(".", 1)[-1]
        detail = None
        if service == "dynamodb" and operation in ("UpdateItem", "PutItem", "DeleteItem"):
            detail = _json_field(body, "UpdateExpression") or operation
        return Call(service, operation, detail)
    if service == "s3":
        bucket_and_key = path.split("?", 1)[0].lstrip("/")
        bucket, _, key = bucket_and_key.partition("/")
        if not key:
            return Call(service, f"{method.title()}Bucket", bucket)
        names = {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject"}
        operation = names.get(method, f"{method.title()}Object")
        return Call(service, operation, f"{bucket}/{unquote(key)}")
    return Call(service, method, None)


def _json_field(body: bytes, name: str) -> str | None:
    try:
        value = json.loads(body).get(name)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def error_code(service: str, status: int, body: bytes) -> str | None:
    """The AWS error code of an answer (JSON ``__type`` or S3's XML ``<Code>``)."""
    if status < 400:
        return None
    if service == "s3":
        found = _S3_ERROR_CODE.search(body)
        return found.group(1).decode() if found else str(status)
    error_type = _json_field(body, "__type")
    return error_type.rsplit("#", 1)[-1] if error_type else str(status)


def _throttled() -> web.Response:
    body = {
        "__type": "ProvisionedThroughputExceededException",
        "message": "Rate exceeded for shard in stream under account.",
    }
    return web.Response(
        status=400, body=json.dumps(body).encode(), content_type="application/x-amz-json-1.1"
    )


def _s3_error(code: str) -> web.Response:
    messages = {
        "SlowDown": "Please reduce your request rate.",
        "InternalError": "We encountered an internal error. Please try again.",
    }
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{messages[code]}</Message></Error>"
    ).encode()
    return web.Response(
        status=503 if code == "SlowDown" else 500, body=body, content_type="application/xml"
    )


class FaultProxy:
    """Forwards to ``target``; during a burst answers a fraction of calls with AWS faults."""

    def __init__(self, target: str, *, seed: int = 0) -> None:
        self.target = target.rstrip("/")
        self._rng = random.Random(seed)
        self._burst_until = 0.0
        self._fractions: dict[str, float] = {}
        self._session: aiohttp.ClientSession | None = None
        self.forwarded: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.bursts = 0
        self._journal: deque[JournalEntry] = deque(maxlen=JOURNAL_LIMIT)
        self._answered = 0

    def burst(self, seconds: float, *, kinesis: float = 0.0, s3: float = 0.0) -> None:
        """Fail the given fraction of Kinesis / S3 calls for the next ``seconds``."""
        self._fractions = {"kinesis": kinesis, "s3": s3}
        self._burst_until = time.monotonic() + seconds
        self.bursts += 1

    def _fault(self, call: Call) -> str | None:
        if time.monotonic() >= self._burst_until:
            return None
        if call.service == "kinesis" and call.operation in THROTTLED_KINESIS:
            if self._rng.random() < self._fractions.get("kinesis", 0.0):
                return "ProvisionedThroughputExceededException"
        elif (
            call.service == "s3"
            and call.operation in FAILED_S3
            and self._rng.random() < self._fractions.get("s3", 0.0)
        ):
            return self._rng.choice(("SlowDown", "InternalError"))
        return None

    def _note(self, call: Call, status: int, error: str | None, *, injected: bool) -> None:
        if (call.service, call.operation) in JOURNALED:
            self._answered += 1
            self._journal.append(
                JournalEntry(
                    self._answered,
                    call.service,
                    call.operation,
                    status,
                    error,
                    injected,
                    call.detail,
                )
            )
        label = f"{call.service}.{call.operation}"
        if injected:
            self.injected[f"{label}:{error}"] += 1
        else:
            self.forwarded[label] += 1

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, Any, bytes]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        async with self._session.request(
            request.method,
            URL(self.target + request.raw_path, encoded=True),
            headers=headers,
            data=body,
            # Only the client's own headers: a Content-Type aiohttp added would change how
            # the emulator reads an empty body (moto then refuses CreateBucket).
            skip_auto_headers=_AUTO_HEADERS,
            allow_redirects=False,
        ) as response:
            return response.status, response.headers, await response.read()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one AWS call: forwarded, or refused as AWS would during a burst."""
        if request.path.startswith(CONTROL_PREFIX):
            return await self._control(request)
        body = await request.read()
        call = classify(request.method, request.raw_path, request.headers, body)
        fault = self._fault(call)
        if fault == "ProvisionedThroughputExceededException":
            self._note(call, 400, fault, injected=True)
            return _throttled()
        if fault is not None:
            # Half the refused puts reach S3 first: the object exists, the answer says 5xx.
            if call.operation == "PutObject" and self._rng.random() < 0.5:
                await self._forward(request, body)
                fault_label = f"{fault}AfterWrite"
            else:
                fault_label = fault
            answer = _s3_error(fault)
            self._note(call, answer.status, fault_label, injected=True)
            return answer
        status, headers, content = await self._forward(request, body)
        self._note(call, status, error_code(call.service, status, content), injected=False)
        kept = [
            (key, value)
            for key, value in headers.items()
            if key.lower() not in _NOT_FORWARDED and key.lower() not in _SET_BY_SERVER
        ]
        if request.method == "HEAD":
            # No body, but the length of the object, as the emulator said it.
            head = web.StreamResponse(status=status, headers=kept)
            if "Content-Length" in headers:
                head.content_length = int(headers["Content-Length"])
            await head.prepare(request)
            return head
        return web.Response(status=status, body=content, headers=kept)

    async def _control(self, request: web.Request) -> web.Response:
        action = request.path.removeprefix(CONTROL_PREFIX)
        if action == "burst" and request.method == "POST":
            spec = await request.json()
            self.burst(
                float(spec["seconds"]),
                kinesis=float(spec.get("kinesis", 0.0)),
                s3=float(spec.get("s3", 0.0)),
            )
            return web.json_response({"bursts": self.bursts})
        if action == "stats" and request.method == "GET":
            return web.json_response(
                {
                    "bursts": self.bursts,
                    "forwarded": dict(self.forwarded),
                    "injected": dict(self.injected),
                }
            )
        if action == "journal" and request.method == "GET":
            since = int(request.query.get("since", "0"))
            entries = [asdict(entry) for entry in self._journal if entry.n >= since]
            return web.json_response({"answered": self._answered, "entries": entries})
        return web.json_response({"error": f"no control route {action}"}, status=404)

    async def start(self) -> None:
        """Open the connection pool to the emulator (kept alive between calls)."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=120),
        )

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()


async def serve(target: str, host: str, port: int, seed: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    proxy = FaultProxy(target, seed=seed)
    await proxy.start()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    # A catch-all route rather than a bare server: routes answer "Expect: 100-continue"
    # (aiobotocore sends it with S3 puts and waits for the answer before sending the body).
    app.router.add_route("*", "/{path:.*}", proxy.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    logger.info("fault proxy on http://%s:%d -> %s (seed %d)", host, port, target, seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await proxy.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m cardstream.local.fault_proxy --target URL --port N [--seed S]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True, help="the emulator's URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(args.target, args.host, args.port, args.seed))


if __name__ == "__main__":
    main()
