"""The OpenAPI document's hand-written parts and the self-hosted Swagger UI and ReDoc.

Request bodies are read by the routes themselves (through the shared decoding door), so
their schemas and examples are declared here rather than inferred from parameters. The
documentation pages load their JavaScript and CSS from this service (``static/``), never
from a CDN, so they work on a machine without internet access.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Final

import orjson
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import HTMLResponse

from cardstream_shared.contract import KAGGLE_FIELDS, TransactionIn, kaggle_example
from ingest_api.models import BatchResponse, Problem, Receipt
from ingest_api.problems import PROBLEM_MEDIA_TYPE

STATIC_DIR: Final = Path(__file__).parent / "static"
_TXN_REF: Final = {"$ref": "#/components/schemas/TransactionIn"}
BEARER_SCHEME: Final = "BearerAuth"


def _second_example() -> dict[str, Any]:
    row = kaggle_example()
    row.update(trans_num="a1a22d70485983eac12b5b88dad1cf95", amt="107.23", is_fraud=None)
    return row


def csv_example() -> str:
    """The published CSV shape: unnamed index column, header, one row per transaction."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["", *KAGGLE_FIELDS])
    for index, row in enumerate((kaggle_example(), _second_example())):
        writer.writerow([index, *("" if row[f] is None else row[f] for f in KAGGLE_FIELDS)])
    return out.getvalue()


def ndjson_example() -> str:
    """Two transactions as newline-delimited JSON."""
    return "".join(
        orjson.dumps(row).decode() + "\n" for row in (kaggle_example(), _second_example())
    )


def bearer_security() -> dict[str, Any]:
    """``openapi_extra`` declaring the bearer scheme on a route that checks it itself."""
    return {"security": [{BEARER_SCHEME: []}]}


def single_request_body() -> dict[str, Any]:
    """``openapi_extra`` of ``POST /v1/transactions``."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": _TXN_REF,
                    "examples": {
                        "kaggle_row": {
                            "summary": "A row of the published Kaggle data",
                            "value": kaggle_example(),
                        }
                    },
                }
            },
        }
    }


def batch_request_body() -> dict[str, Any]:
    """``openapi_extra`` of ``POST /v1/transactions/batch``."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": _TXN_REF, "minItems": 1},
                    "examples": {
                        "two_rows": {
                            "summary": "Two Kaggle rows as a JSON array",
                            "value": [kaggle_example(), _second_example()],
                        }
                    },
                },
                "application/x-ndjson": {
                    "schema": {"type": "string", "description": "One JSON object per line."},
                    "example": ndjson_example(),
                },
                "text/csv": {
                    "schema": {
                        "type": "string",
                        "description": "The published CSV: header row required; the "
                        "unnamed index column is optional.",
                    },
                    "example": csv_example(),
                },
            },
        }
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": _ref("Problem")}},
    }


def _write_errors() -> dict[str, Any]:
    return {
        "400": _problem(
            "The body cannot be read: not JSON (or not a JSON array of records), not UTF-8, "
            "nested deeper than a record's fields."
        ),
        "401": _problem("Missing or invalid bearer token."),
        "403": _problem(
            "The token lacks the scope `transactions:write`, or its client is not a "
            "registered merchant."
        ),
        "413": _problem(
            "Body too large, a single record over 64 KiB, more records than allowed "
            "(reading stops at the first record past the limit), or more than the "
            "merchant's burst."
        ),
        "415": _problem(
            "Unsupported media type, a charset other than UTF-8, or a `Content-Encoding` "
            "(compressed bodies are not accepted)."
        ),
        "422": _problem(
            "The input is not valid; `errors` names each field and never repeats a value. A "
            "card number anywhere but `cc_num` is refused with `type: card_number`."
        ),
        "429": _problem(
            "Rate limit exceeded (charged before the body is read); retry after `Retry-After` "
            "seconds."
        ),
    }


def write_paths() -> dict[str, Any]:
    """Path items of the two write routes (plain Starlette routes, see routes.transactions)."""
    return {
        "/v1/transactions": {
            "post": {
                "tags": ["transactions"],
                "summary": "Submit one transaction",
                "description": "Validate one transaction, tokenize its card number and store "
                "it in the stream. Answers 202 with the receipt (shard and sequence number) "
                "only once Kinesis stored it.",
                "operationId": "post_transaction",
                **single_request_body(),
                **bearer_security(),
                "responses": {
                    "202": {
                        "description": "Stored in the stream.",
                        "content": {"application/json": {"schema": _ref("Receipt")}},
                    },
                    **_write_errors(),
                    "503": _problem(
                        "Kinesis did not store the record in time; it was not accepted, or "
                        "the merchant registry cannot be read yet (`Retry-After` says when "
                        "to retry)."
                    ),
                },
            }
        },
        "/v1/transactions/batch": {
            "post": {
                "tags": ["transactions"],
                "summary": "Submit many transactions (JSON array, NDJSON or CSV)",
                "description": "One result per record, in input order: accepted with its "
                "receipt, or rejected with field-level reasons. One bad record never costs "
                "the others; a repeated `trans_num` is rejected for the repeats.",
                "operationId": "post_batch",
                **batch_request_body(),
                **bearer_security(),
                "responses": {
                    "200": {
                        "description": "Every valid record is stored.",
                        "content": {"application/json": {"schema": _ref("BatchResponse")}},
                    },
                    **_write_errors(),
                    "503": _problem(
                        "Some valid records were not stored in time: they have status "
                        "`not_accepted` in `results` (never claimed accepted); retry those. "
                        "Or the merchant registry cannot be read yet (nothing was read)."
                    ),
                },
            }
        },
    }


def install(app: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets, and complete the OpenAPI document."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{root}/static/swagger-ui/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}/static/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{root}/static/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes[BEARER_SCHEME] = {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An access token from the cardstream issuer (Cognito in AWS).",
            }
            components = schema["components"].setdefault("schemas", {})
            txn_schema = TransactionIn.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components.update(txn_schema.pop("$defs", {}))
            _, defs = models_json_schema(
                [(model, "serialization") for model in (Receipt, BatchResponse, Problem)],
                ref_template="#/components/schemas/{model}",
            )
            for name, definition in defs.get("$defs", {}).items():
                components.setdefault(name, definition)
            schema["paths"] = write_paths() | schema.get("paths", {})
            txn_schema["examples"] = [kaggle_example()]
            components["TransactionIn"] = txn_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
