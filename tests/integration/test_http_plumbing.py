"""The HTTP answers every service shares: what a caller gets on an outage, a bug, a huge body."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Cookie, Header, Query
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.types import Message, Receive, Scope, Send

from spoc_platform.web import ApiError, BodyLimitMiddleware, SharedPathRoute, create_service_app

pytestmark = pytest.mark.integration

OUTAGES: dict[str, Exception] = {
    "refused": OperationalError("SELECT 1", {}, ConnectionRefusedError(111, "refused")),
    "pool": PoolTimeoutError("QueuePool limit of size 1 overflow 0 reached"),
    "socket": ConnectionResetError(104, "reset by peer"),
}
BUGS: dict[str, Exception] = {
    "constraint": IntegrityError("INSERT", {}, Exception("duplicate key")),
    "code": KeyError("missing"),
}


class Thing(BaseModel):
    name: str
    size: int


@asynccontextmanager
async def failing_app() -> AsyncIterator[httpx.AsyncClient]:
    router = APIRouter(route_class=SharedPathRoute)

    @router.get("/fails/{how}")
    async def fails(how: str) -> None:
        raise {**OUTAGES, **BUGS}[how]

    @router.get("/items/{item_id}")
    async def item(
        item_id: int,
        limit: Annotated[int, Query(ge=1)] = 10,
        x_trace: Annotated[int | None, Header()] = None,
        session: Annotated[int | None, Cookie()] = None,
    ) -> dict[str, int]:
        if item_id == 404:
            raise ApiError(404, "not_found", "no item 404", [{"item": 404}])
        return {"item_id": item_id}

    @router.post("/items")
    async def add(body: Thing) -> dict[str, str]:
        return {"name": body.name}

    @router.put("/items/{item_id}")
    async def replace(item_id: int, body: Thing) -> dict[str, str]:
        return {"name": body.name}

    async def ready() -> dict[str, str]:
        return {"database": "ok"}

    app = create_service_app(
        service="plumbing", title="plumbing", readiness=ready, routers=[router]
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://plumbing") as http:
        yield http


@pytest.mark.parametrize("outage", sorted(OUTAGES))
async def test_a_dependency_outage_is_a_503_with_a_retry_hint_and_a_stable_message(
    outage: str,
) -> None:
    async with failing_app() as http:
        answer = await http.get(f"/fails/{outage}")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "2"
    assert answer.json() == {
        "error": {
            "code": "service_unavailable",
            "message": "a service this request needs is not reachable",
            "details": [],
        }
    }


@pytest.mark.parametrize("bug", sorted(BUGS))
async def test_a_bug_is_a_500_that_tells_the_caller_nothing_of_its_insides(bug: str) -> None:
    async with failing_app() as http:
        answer = await http.get(f"/fails/{bug}")
    assert answer.status_code == 500
    assert "retry-after" not in answer.headers
    assert answer.json() == {
        "error": {
            "code": "internal_error",
            "message": "an unexpected error occurred",
            "details": [],
        }
    }


async def _ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body", False):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"read"})


def _request(headers: list[tuple[bytes, bytes]]) -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", b"application/json"), *headers],
    }


async def _drive(
    middleware: BodyLimitMiddleware, scope: Scope, chunks: list[bytes]
) -> list[Message]:
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return pending.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    return sent


@pytest.mark.parametrize(
    ("declared", "chunks"),
    [
        pytest.param([(b"content-length", b"11")], [b"x" * 11], id="declared"),
        pytest.param([], [b"x" * 6, b"x" * 5], id="chunked"),
    ],
)
async def test_a_body_over_the_limit_gets_exactly_one_413_json_answer(
    declared: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> None:
    middleware = BodyLimitMiddleware(_ok_app, max_bytes=10)
    sent = await _drive(middleware, _request(declared), chunks)

    body: dict[str, Any] = {
        "error": {
            "code": "body_too_large",
            "message": "request body is larger than 10 bytes",
            "details": [],
        }
    }
    encoded = json.dumps(body).encode()
    assert sent == [
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(encoded)).encode()),
            ],
        },
        {"type": "http.response.body", "body": encoded},
    ]


async def test_a_body_at_the_limit_reaches_the_app() -> None:
    middleware = BodyLimitMiddleware(_ok_app, max_bytes=10)
    for declared, chunks in (([(b"content-length", b"10")], [b"x" * 10]), ([], [b"x" * 5] * 2)):
        sent = await _drive(middleware, _request(declared), chunks)
        assert [m.get("status") for m in sent] == [200, None]
        assert sent[-1]["body"] == b"read"


async def test_a_bad_request_is_a_422_naming_each_field_by_where_it_was_sent() -> None:
    async with failing_app() as http:
        params = await http.get(
            "/items/seven",
            params={"limit": "0"},
            headers={"X-Trace": "not-a-number", "Cookie": "session=stale"},
        )
        body = await http.post("/items", json={"name": "a", "size": "big", "extra": 1})
        missing = await http.post("/items")

    assert params.status_code == body.status_code == missing.status_code == 422
    error = params.json()["error"]
    assert (error["code"], error["message"]) == (
        "validation_error",
        "invalid request: cookie.session, header.x-trace, path.item_id, query.limit",
    )
    assert [(d["field"], d["type"]) for d in error["details"]] == [
        ("path.item_id", "int_parsing"),
        ("query.limit", "greater_than_equal"),
        ("header.x-trace", "int_parsing"),
        ("cookie.session", "int_parsing"),
    ]
    assert all(d["message"] for d in error["details"])
    # A body's fields are named as the client wrote them; a body that is missing is "body".
    assert body.json()["error"]["message"] == "invalid request: size"
    assert [d["field"] for d in body.json()["error"]["details"]] == ["size"]
    assert missing.json()["error"]["message"] == "invalid request: body"


async def test_a_callers_mistake_is_answered_with_its_code_message_and_details() -> None:
    async with failing_app() as http:
        answer = await http.get("/items/404")
        unknown = await http.get("/nowhere")
        wrong_method = await http.delete("/items/1")

    assert (answer.status_code, answer.json()) == (
        404,
        {"error": {"code": "not_found", "message": "no item 404", "details": [{"item": 404}]}},
    )
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"error": {"code": "not_found", "message": "Not Found", "details": []}},
    )
    assert (wrong_method.status_code, wrong_method.json()) == (
        405,
        {"error": {"code": "method_not_allowed", "message": "Method Not Allowed", "details": []}},
    )
    # Every method of the path, from each of its routes (not only the first one's).
    assert wrong_method.headers["allow"] == "GET, PUT"


def test_an_api_error_reads_as_its_message() -> None:
    error = ApiError(409, "conflict", "ticket SD-000001 is closed")
    assert str(error) == "ticket SD-000001 is closed"
    assert (error.status, error.code, error.details, error.headers) == (409, "conflict", [], None)


async def test_the_lifespan_runs_start_before_serving_and_stop_after_through_the_middlewares() -> (
    None
):
    happened: list[str] = []

    async def start() -> None:
        happened.append("start")

    async def stop() -> None:
        happened.append("stop")

    async def ready() -> dict[str, str]:
        return {"database": "ok"}

    app = create_service_app(
        service="lifespan", title="lifespan", readiness=ready, start=start, stop=stop
    )
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        if len(incoming) == 1:
            assert happened == ["start"], "the app was told to stop before it had started"
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert happened == ["start", "stop"]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_the_openapi_document_names_the_service_its_version_and_the_operations_endpoints() -> None:
    async def ready() -> dict[str, str]:
        return {"database": "ok"}

    document = create_service_app(
        service="documented", title="Spoc documented", readiness=ready
    ).openapi()
    # A service passes its own package's version; the plumbing's own is the default.
    assert document["info"] == {
        "title": "Spoc documented",
        "version": metadata.version("spoc-platform"),
    }
    for path in ("/healthz", "/readyz", "/metrics"):
        assert document["paths"][path]["get"]["tags"] == ["operations"], path


async def test_by_default_a_body_over_sixty_four_kib_is_refused() -> None:
    json_type = {"content-type": "application/json"}
    async with failing_app() as http:
        at_limit = await http.post("/items", content=b" " * 65_536, headers=json_type)
        over = await http.post("/items", content=b" " * 65_537, headers=json_type)
    assert at_limit.status_code == 422  # read, and found not to be JSON at all
    assert at_limit.json()["error"]["details"][0]["type"] == "json_invalid"
    assert over.status_code == 413


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/jsonx", "text/json"],
)
async def test_a_body_sent_as_another_type_than_json_is_a_415(content_type: str) -> None:
    async with failing_app() as http:
        answer = await http.post(
            "/items",
            content=b'{"name": "a", "size": 1}',
            headers={"content-type": content_type},
        )
    assert answer.status_code == 415
    assert answer.json() == {
        "error": {
            "code": "unsupported_media_type",
            "message": "request body must be JSON (Content-Type: application/json)",
            "details": [],
        }
    }


@pytest.mark.parametrize(
    "content_type", [None, "application/json; charset=utf-8", "application/merge-patch+json"]
)
async def test_json_by_any_json_media_type_or_none_is_read(content_type: str | None) -> None:
    # No Content-Type at all is read as JSON, as it always has been: clients that send
    # requests.post(url, data=json.dumps(body)) say nothing of the type.
    headers = {"content-type": content_type} if content_type else {}
    async with failing_app() as http:
        answer = await http.post("/items", content=b'{"name": "a", "size": 1}', headers=headers)
        unparseable = await http.post("/items", content=b'{"name": ', headers=headers)
    assert (answer.status_code, answer.json()) == (200, {"name": "a"})
    assert unparseable.status_code == 422


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            b'{"name": "a",\n "size": }',
            "Expecting value: line 2 column 10 (char 23)",
            id="syntax",
        ),
        pytest.param(
            b'\n{"size": }',
            "Expecting value: line 2 column 10 (char 10)",
            id="syntax-after-a-leading-line-break",
        ),
        pytest.param(
            b'{"name": "a",\n\n "size": }\n',
            "Expecting value: line 3 column 10 (char 24)",
            id="syntax-between-line-breaks",
        ),
        pytest.param(
            b'{"name": "\xff"}', "not UTF-8 text: byte 10 cannot be decoded", id="not-utf8"
        ),
        pytest.param(b"[" * 30_000 + b"]" * 30_000, "nested too deeply", id="deep"),
    ],
)
async def test_a_body_that_is_not_valid_json_gets_one_422_that_names_no_field(
    body: bytes, message: str
) -> None:
    # The 422 `validation_error` a syntax error has always been; the position is in the
    # message: an offset in the body is no field.
    async with failing_app() as http:
        answer = await http.post(
            "/items", content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 422
    assert answer.json() == {
        "error": {
            "code": "validation_error",
            "message": "invalid request: body is not valid JSON",
            "details": [{"type": "json_invalid", "message": message}],
        }
    }
