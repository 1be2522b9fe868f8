"""``/v1/transactions``: post one, post a batch, read one back."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Final

import msgspec
from fastapi import APIRouter, Path, Request, Security
from starlette.responses import Response

from cardstream_shared import resource_names as names
from cardstream_shared.contract import TIMESTAMP_FORMAT
from cardstream_shared.jwt_auth import Principal
from cardstream_shared.transaction_input import (
    MAX_RECORD_BYTES,
    BodyError,
    Rejected,
    read_batch_off_loop,
    read_transaction,
)
from ingest_api import openapi_docs, rate_limit
from ingest_api.auth import BearerAuth
from ingest_api.body import BATCH_FORMATS, JSON, media_type, read_body
from ingest_api.models import BatchResponse, CardOut, Lineage, Receipt, TransactionOut
from ingest_api.problems import ProblemError
from ingest_api.reads import DatabaseUnavailableError
from ingest_api.runtime import Runtime
from ingest_api.tenancy import TenantScope

router = APIRouter(prefix="/v1", tags=["transactions"])
# The write routes: FastAPI describes them and answers their other methods, while a POST to
# their exact path is served by the write lane (app.IngestApp.add_write_lane), which calls
# the handler with the raw Request alone, so they take no dependency and check the bearer
# token themselves (WRITE, below).
write_router = APIRouter(prefix="/v1", tags=["transactions"])

WRITE = BearerAuth(names.SCOPE_WRITE, merchants_only=True)
READ = BearerAuth(names.SCOPE_READ)


_COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: openapi_docs.problem("Missing or invalid bearer token."),
    403: openapi_docs.problem(
        "The token lacks the required scope, or its client is neither a registered merchant"
        " nor an operator."
    ),
    429: openapi_docs.problem("Rate limit exceeded; retry after `Retry-After` seconds."),
}

_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: openapi_docs.problem(
        "The body cannot be read: not JSON (or not a JSON array of records), not UTF-8, "
        "nested deeper than a record's fields."
    ),
    401: openapi_docs.problem("Missing or invalid bearer token."),
    403: openapi_docs.problem(
        "The token lacks the scope `transactions:write`, or its client is not a registered "
        "merchant."
    ),
    413: openapi_docs.problem(
        "Body too large, a single record over 64 KiB, more records than allowed (reading "
        "stops at the first record past the limit), or more than the merchant's burst."
    ),
    415: openapi_docs.problem(
        "Unsupported media type, a charset other than UTF-8, or a `Content-Encoding` "
        "(compressed bodies are not accepted)."
    ),
    422: openapi_docs.problem(
        "The input is not valid; `errors` names each field and never repeats a value. A "
        "card number anywhere but `cc_num` is refused with `type: card_number`, a record "
        "naming a key twice with `type: duplicate_key`."
    ),
    429: openapi_docs.problem(
        "Rate limit exceeded (charged before the body is read); retry after `Retry-After` seconds."
    ),
}


_ENCODER: Final = msgspec.json.Encoder()


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _json(body: Any, status: int) -> Response:
    return Response(_ENCODER.encode(body), status_code=status, media_type=JSON)


def _unreadable(error: BodyError) -> ProblemError:
    return ProblemError(error.status, error.kind, error.detail)


def _rate_limit(request: Request, client_id: str, cost: int) -> None:
    # At the merchant's own rate and burst (its registry entry, left by BearerAuth); an
    # operator at the service's.
    runtime = _runtime(request)
    rate_limit.enforce(
        runtime.limiter,
        client_id,
        cost,
        metrics=runtime.metrics,
        detail="too many records for this client; slow down",
        merchant=request.state.merchant,
    )


@write_router.post(
    "/transactions",
    status_code=202,
    summary="Submit one transaction",
    operation_id="post_transaction",
    response_class=Response,
    responses={
        202: {"description": "Stored in the stream.", "model": Receipt},
        **_WRITE_ERRORS,
        503: openapi_docs.problem(
            "Kinesis did not store the record in time; it was not accepted, or the merchant "
            "registry cannot be read yet (`Retry-After` says when to retry)."
        ),
    },
    openapi_extra=openapi_docs.single_request_body() | openapi_docs.bearer_security(),
)
async def post_transaction(request: Request) -> Response:
    """Validate one transaction, tokenize its card number and store it in the stream.
    Answers 202 with the receipt (shard and sequence number) only once Kinesis stored it."""
    principal = await WRITE(request)
    runtime = _runtime(request)
    if media_type(request) != JSON:
        raise ProblemError(415, "unsupported-media-type", "send application/json")
    _rate_limit(request, principal.client_id, 1)
    body = await read_body(request, min(runtime.settings.max_body_bytes, MAX_RECORD_BYTES))
    try:
        checked = read_transaction(body)
    except BodyError as error:
        raise _unreadable(error) from None
    if isinstance(checked, Rejected):
        runtime.ingestor.reject(checked.errors)
        raise ProblemError(
            422,
            "validation-error",
            "the transaction is not valid",
            errors=checked.errors,
            extra={"trans_num": checked.trans_num},
        )
    receipt = await runtime.ingestor.ingest_one(checked, client_id=principal.client_id)
    if receipt is None:
        raise ProblemError(
            503,
            "not-accepted",
            "the stream did not store the transaction in time; it was not accepted, retry it",
            headers={"Retry-After": str(runtime.settings.retry_after_s)},
            extra={
                "trans_num": checked.trans_num,
                "results": [{"index": 0, "trans_num": checked.trans_num, "status": "not_accepted"}],
            },
        )
    return _json(
        {
            "trans_num": checked.trans_num,
            "status": "accepted",
            "shard_id": receipt.shard_id,
            "sequence_number": receipt.sequence_number,
        },
        202,
    )


@write_router.post(
    "/transactions/batch",
    summary="Submit many transactions (JSON array, NDJSON or CSV)",
    operation_id="post_batch",
    response_class=Response,
    responses={
        200: {"description": "Every valid record is stored.", "model": BatchResponse},
        **_WRITE_ERRORS,
        503: openapi_docs.problem(
            "Some valid records were not stored in time: they have status `not_accepted` "
            "in `results` (never claimed accepted); retry those. Or the merchant registry "
            "cannot be read yet (nothing was read)."
        ),
    },
    openapi_extra=openapi_docs.batch_request_body() | openapi_docs.bearer_security(),
)
async def post_batch(request: Request) -> Response:
    """One result per record, in input order: accepted with its receipt, or rejected with
    field-level reasons. One bad record never costs the others; a repeated `trans_num`
    is rejected for the repeats."""
    principal = await WRITE(request)
    runtime = _runtime(request)
    form = BATCH_FORMATS.get(media_type(request))
    if form is None:
        raise ProblemError(
            415,
            "unsupported-media-type",
            "send application/json (array), application/x-ndjson or text/csv",
        )
    # Charged before the body is read, so that a client past its rate gets no work done;
    # the rest of the batch's cost once its records are counted.
    _rate_limit(request, principal.client_id, 1)
    body = await read_body(request, runtime.settings.max_body_bytes)
    try:
        records = await read_batch_off_loop(
            body, form, max_records=runtime.settings.max_records_per_request
        )
    except BodyError as error:
        raise _unreadable(error) from None
    if not records:
        raise ProblemError(422, "validation-error", "the batch holds no records")
    rate_limit.refuse_beyond_burst(runtime.limiter, len(records), request.state.merchant)
    if len(records) > 1:
        _rate_limit(request, principal.client_id, len(records) - 1)
    results = await runtime.ingestor.ingest_many(records, client_id=principal.client_id)
    counts = {"accepted": 0, "rejected": 0, "not_accepted": 0}
    for result in results:
        counts[result.status] += 1
    if counts["not_accepted"]:
        raise ProblemError(
            503,
            "not-accepted",
            f"{counts['not_accepted']} valid record(s) were not stored in time and were not "
            "accepted; retry those with status not_accepted",
            headers={"Retry-After": str(runtime.settings.retry_after_s)},
            extra={
                "not_accepted": counts["not_accepted"],
                "accepted": counts["accepted"],
                "rejected": counts["rejected"],
                "results": msgspec.to_builtins(results),
            },
        )
    # The results are msgspec structs in the contract's shape: one call writes them all.
    payload = {"accepted": counts["accepted"], "rejected": counts["rejected"], "results": results}
    return _json(payload, 200)


def _transaction_out(row: dict[str, Any]) -> TransactionOut:
    when = row["trans_date_trans_time"]
    amount = row["amt"]
    return TransactionOut(
        trans_num=row["trans_num"],
        trans_date_trans_time=when.strftime(TIMESTAMP_FORMAT)
        if isinstance(when, dt.datetime)
        else str(when),
        unix_time=row["unix_time"],
        amt=format(amount, "f") if isinstance(amount, Decimal) else str(amount),
        category=row["category"],
        merchant=row["merchant"],
        merch_lat=row["merch_lat"],
        merch_long=row["merch_long"],
        card=CardOut(masked=row["card_masked"], last4=row["card_last4"]),
        first=row["first"],
        last=row["last"],
        gender=row["gender"],
        street=row["street"],
        city=row["city"],
        state=row["state"],
        zip=str(row["zip"]),
        lat=row["lat"],
        long=row["long"],
        city_pop=row["city_pop"],
        job=row["job"],
        dob=row["dob"],
        is_fraud=row["is_fraud"],
        lineage=Lineage(
            client_id=row["client_id"],
            received_at=row["received_at"],
            s3_bucket=row["s3_bucket"],
            s3_key=row["s3_key"],
            loaded_at=row["loaded_at"],
        ),
    )


@router.get(
    "/transactions/{trans_num}",
    summary="Read a loaded transaction (card masked) with its lineage",
    response_model=TransactionOut,
    responses={
        **_COMMON_ERRORS,
        404: openapi_docs.problem(
            "No loaded transaction with this trans_num that this client posted (or, with"
            " `tenants:all`, at all)."
        ),
        422: openapi_docs.problem("trans_num is not a valid id."),
        503: openapi_docs.problem("The database is unavailable."),
    },
)
async def get_transaction(
    request: Request,
    trans_num: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", max_length=64)],
    principal: Annotated[Principal, Security(READ)],
) -> Response:
    """The transaction as loaded in PostgreSQL, read through the read-only api role.

    Transactions appear here once the pipeline loaded them (seconds to minutes after they
    were accepted); until then, and for transactions another client posted, the answer is
    the same 404. A token with the operator scope `tenants:all` reads every client's.
    """
    runtime = _runtime(request)
    _rate_limit(request, principal.client_id, 1)
    try:
        # BearerAuth leaves no registry entry for an operator's client.
        scope = TenantScope.of(principal, operator=request.state.merchant is None)
        row = await runtime.reader.find(trans_num, scope)
    except DatabaseUnavailableError:
        raise ProblemError(
            503,
            "database-unavailable",
            "transactions cannot be read right now",
            headers={"Retry-After": str(runtime.settings.retry_after_s)},
        ) from None
    if row is None:
        raise ProblemError(404, "not-found", "no loaded transaction with this trans_num")
    return Response(
        _transaction_out(row).model_dump_json().encode(), status_code=200, media_type=JSON
    )
