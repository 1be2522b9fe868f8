"""The OpenAPI document's hand-written parts and the self-hosted Swagger UI and ReDoc.

Request bodies are read by the routes themselves (through the shared decoding door), so
their schemas and examples are given to FastAPI from here (``openapi_extra``) rather than
inferred from parameters, and the schemas they refer to are added to the document. The
documentation pages load their JavaScript and CSS from this service (``static/``), never
from a CDN, so they work on a machine without internet access.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Final

import msgspec
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import HTMLResponse

from cardstream_monitoring.alerts import AlertPatch
from cardstream_shared.contract import KAGGLE_FIELDS, TransactionIn, kaggle_example
from ingest_api.models import Problem
from ingest_api.problems import PROBLEM_MEDIA_TYPE

STATIC_DIR: Final = Path(__file__).parent / "static"
BEARER_SCHEME: Final = "BearerAuth"


def schema_ref(name: str) -> dict[str, str]:
    """A reference to the document's schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def problem(description: str) -> dict[str, Any]:
    """An error response of a route's ``responses``: a problem document
    (:mod:`ingest_api.problems`)."""
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": schema_ref("Problem")}},
    }


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
        msgspec.json.encode(row).decode() + "\n" for row in (kaggle_example(), _second_example())
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
                    "schema": schema_ref("TransactionIn"),
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
                    "schema": {
                        "type": "array",
                        "items": schema_ref("TransactionIn"),
                        "minItems": 1,
                    },
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
            # Problem documents and the review body are declared by reference (a problem's
            # media type is not the routes' own; the review is read by a dependency), so
            # FastAPI does not add their schemas itself.
            _, defs = models_json_schema(
                [(Problem, "serialization"), (AlertPatch, "validation")],
                ref_template="#/components/schemas/{model}",
            )
            for name, definition in defs.get("$defs", {}).items():
                components.setdefault(name, definition)
            txn_schema["examples"] = [kaggle_example()]
            components["TransactionIn"] = txn_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
