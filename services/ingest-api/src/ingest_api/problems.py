"""RFC 9457 problem details for every error the service answers, including FastAPI's own.

Every error leaves as ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail`` and, for input problems, field-level ``errors`` that name the field but never
repeat the value sent (it may be a card number). An unexpected exception becomes a 500
problem without a stack trace; the trace goes to the log, where redaction applies.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cardstream_shared.field_errors import FieldError
from cardstream_shared.redaction import mask_card_numbers

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
# Problem types are URNs: stable identifiers that promise no dereferenceable page.
TYPE_PREFIX: Final = "urn:cardstream:problem:"


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        errors: Iterable[FieldError] = (),
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def problem_body(
    status: int,
    kind: str,
    detail: str,
    *,
    errors: Iterable[FieldError] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The problem document as a dict."""
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + kind,
        "title": http.HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    error_list = [e.as_dict() for e in errors]
    if error_list:
        body["errors"] = error_list
    if extra:
        # Extension members never replace the standard ones (RFC 9457 3.2).
        body = {**extra, **body}
    return body


def problem_response(
    status: int,
    kind: str,
    detail: str,
    *,
    errors: Iterable[FieldError] = (),
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """A ``Response`` carrying a problem document."""
    return Response(
        msgspec.json.encode(problem_body(status, kind, detail, errors=errors, extra=extra)),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


def _kind_for_status(status: int) -> str:
    return {
        400: "bad-request",
        401: "unauthorized",
        403: "forbidden",
        404: "not-found",
        405: "method-not-allowed",
        406: "not-acceptable",
        413: "payload-too-large",
        415: "unsupported-media-type",
        422: "validation-error",
        429: "rate-limited",
        503: "unavailable",
    }.get(status, "http-error")


# A request's validation errors named in its answer; the rest are counted. A body of many
# unknown fields would otherwise get an answer several times its size.
MAX_NAMED_ERRORS: Final = 10


def _request_errors(exc: RequestValidationError) -> list[FieldError]:
    result = []
    errors = exc.errors()
    for item in errors[:MAX_NAMED_ERRORS]:
        # FastAPI prefixes locations with "body", "path", "query" or "header". A location
        # names what the caller sent, a key of its JSON body included: a card number
        # written as a key is named masked, as in the messages.
        loc = mask_card_numbers(".".join(str(part) for part in item.get("loc", ()))) or None
        message = mask_card_numbers(str(item.get("msg", "invalid")))
        result.append(FieldError(loc, message, str(item.get("type"))))
    if len(errors) > MAX_NAMED_ERRORS:
        more = f"and {len(errors) - MAX_NAMED_ERRORS} more errors"
        result.append(FieldError(None, more, "too_many_errors"))
    return result


def problem_error_response(exc: ProblemError) -> Response:
    """The problem+json answer of a raised :class:`ProblemError`."""
    return problem_response(
        exc.status, exc.kind, exc.detail, errors=exc.errors, headers=exc.headers, extra=exc.extra
    )


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return problem_error_response(exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else http.HTTPStatus(exc.status_code).phrase
    return problem_response(
        exc.status_code, _kind_for_status(exc.status_code), detail, headers=exc.headers
    )


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem_response(
        422, "validation-error", "the request is not valid", errors=_request_errors(exc)
    )


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` with problem+json."""
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_middleware(UnexpectedErrorMiddleware)


class UnexpectedErrorMiddleware:
    """Turns an exception that escaped every handler into a 500 problem, logged once.

    Starlette's own server-error handler would re-raise after answering, so the process
    would log the exception twice and a test client would see it; this answers and stops.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            logger.exception(
                "unhandled error", extra={"path": scope.get("path"), "method": scope.get("method")}
            )
            if started:
                # Headers are gone; the only honest thing left is to cut the response.
                raise
            response = problem_response(
                500, "internal-error", "the server failed to process the request"
            )
            await response(scope, receive, send)
