"""What every service's OpenAPI document promises: the error object for each status a route can
answer with, operation ids a generated client reads well, and a /docs that works offline."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    """One thing wrong with a request. `field` names where it was sent (`subject`,
    `requester.email`, `header.Idempotency-Key`) and is absent when no field is to blame (a
    body that is not valid JSON: type `json_invalid`, where `message` says what is wrong and at
    which line and column); some errors add facts of their own."""

    model_config = ConfigDict(extra="allow")

    field: str | None = None
    message: str | None = None
    type: str | None = Field(default=None, description="Machine-readable, e.g. `string_too_long`")


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable and machine-readable, e.g. `validation_error`")
    message: str = Field(description="For people; may change between versions")
    details: list[ErrorDetail]


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer of every Spoc service."""

    error: ErrorInfo


ERROR_REF = "#/components/schemas/ErrorResponse"

ERROR_DESCRIPTIONS: dict[int, str] = {
    401: "Missing or wrong credentials; code `unauthenticated`",
    404: "Nothing at this address; code `not_found`",
    413: "The body is larger than the service accepts; code `body_too_large`",
    415: "The body is sent as something other than JSON (send `Content-Type: application/json`, "
    "or no Content-Type); code `unsupported_media_type`",
    422: "The request is invalid; code `validation_error`. `error.details` names each bad "
    "field, or, for a body that is not valid JSON (a syntax error, bytes that are not UTF-8, "
    "nesting too deep), holds one detail of type `json_invalid` without a field",
    500: "A bug in Spoc; the answer tells nothing of its insides; code `internal_error`",
    503: "A service this request needs (database, message bus) is not reachable; try again after "
    "`Retry-After` seconds; code `service_unavailable`",
}

RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer"},
    }
}


def error_response(
    status: int, description: str | None = None, *, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One entry of a route's `responses=`: the error object under that status. As JSON even
    on a route whose own answer is not (FastAPI would file a `model` under the route's type)."""
    entry: dict[str, Any] = {
        "description": description or ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }
    if headers or status == 503:
        entry["headers"] = {**(RETRY_AFTER if status == 503 else {}), **(headers or {})}
    return entry


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: error_response(status) for status in statuses}


def operation_id(route: APIRoute) -> str:
    """`create_ticket` → `createTicket`: what generated clients name their functions after.
    Routes are named for what they do, so the name alone is unique within a service."""
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def document_errors(app: FastAPI) -> None:
    """Completes the document FastAPI builds: each operation also lists the errors every route
    of its kind can answer with, as the error object (FastAPI's own 422 schema describes an
    answer Spoc never gives and is replaced)."""
    build = app.openapi
    done = False

    def openapi() -> dict[str, Any]:
        nonlocal done
        document = build()
        if not done:
            _complete(document)
            done = True
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, schema in error_schema.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    schemas.setdefault("ErrorResponse", error_schema)
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status in _statuses_of(operation):
                documented = responses.get(str(status))
                if documented is None or _is_fastapi_validation_error(documented):
                    responses[str(status)] = {
                        "description": ERROR_DESCRIPTIONS[status],
                        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
                    }
            # By status, as people scan them (FastAPI lists the route's own first).
            operation["responses"] = dict(sorted(responses.items()))
    if "HTTPValidationError" not in _refs(document):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)


def _statuses_of(operation: dict[str, Any]) -> list[int]:
    statuses = [500]
    if operation.get("parameters"):
        statuses.append(422)
    if "requestBody" in operation:
        # 413 only where a body is read: elsewhere the limit is not a promise worth making.
        statuses.extend([413, 415, 422])
    return sorted(set(statuses))


def _is_fastapi_validation_error(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def _refs(document: dict[str, Any]) -> set[str]:
    return set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))


# Swagger UI 5 and ReDoc as a Python package ships them, served by Spoc itself: /docs and
# /redoc need no CDN. Swagger UI 5 is the first to render the OpenAPI 3.1 FastAPI writes.
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
DOCS_ASSETS_PATH = "/docs/assets"


def install_offline_docs(app: FastAPI, title: str) -> None:
    """/docs (Swagger UI) and /redoc from assets Spoc serves, never a CDN: a desk on an
    isolated network still reads its API."""
    app.mount(DOCS_ASSETS_PATH, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    def assets(request: Request) -> tuple[str, str]:
        # Relative to wherever the service is mounted (a proxy's root_path).
        root = request.scope.get("root_path", "").rstrip("/")
        return f"{root}{app.openapi_url}", f"{root}{DOCS_ASSETS_PATH}"

    async def swagger_ui(request: Request) -> HTMLResponse:
        openapi_url, assets_url = assets(request)
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} – API",
            swagger_js_url=f"{assets_url}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets_url}/swagger-ui.css",
            swagger_favicon_url=f"{assets_url}/favicon.png",
            oauth2_redirect_url=None,
            # Swagger UI would otherwise fetch a badge from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    async def redoc(request: Request) -> HTMLResponse:
        openapi_url, assets_url = assets(request)
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} – API",
            redoc_js_url=f"{assets_url}/redoc.standalone.js",
            redoc_favicon_url=f"{assets_url}/favicon.png",
            with_google_fonts=False,
        )

    app.add_api_route("/docs", swagger_ui, include_in_schema=False, methods=["GET"])
    app.add_api_route("/redoc", redoc, include_in_schema=False, methods=["GET"])
