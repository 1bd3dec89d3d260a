"""What each service's OpenAPI document promises, read as a client generator or a person would:
every error answer's shape, names that read well, honest media types and formats, and a /docs
page that needs nothing from the internet."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from importlib import metadata
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi import FastAPI

from spoc.services import SERVICES, ServiceName
from spoc_sla.calendar import TIME_OF_DAY_PATTERN
from tests.e2e.journey import NEW_TICKET

pytestmark = pytest.mark.integration

TOKEN = "an-admin-token-long-enough-not-to-be-guessed"
ERROR = {"$ref": "#/components/schemas/ErrorResponse"}
SERVICE_NAMES = [s.value for s in ServiceName]


def app_of(name: str) -> FastAPI:
    # Nothing here opens the database: it need not exist.
    entry = SERVICES[ServiceName(name)]
    settings = entry.settings(
        database_url="sqlite+aiosqlite:////nonexistent/openapi-only.sqlite3",
        bus="memory",
        admin_token=TOKEN,
    )
    app: FastAPI = entry.create_app(settings, manage_runtime=False)
    return app


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, by_method in document["paths"].items()
        for method, operation in by_method.items()
    ]


@pytest.fixture
async def sla() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_of("sla"))
    async with httpx.AsyncClient(transport=transport, base_url="http://sla") as http:
        yield http


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_every_error_a_route_can_answer_is_documented_as_the_error_object(name: str) -> None:
    document = app_of(name).openapi()
    for method, path, operation in operations(document):
        responses = operation["responses"]
        expected = {"500"}
        if operation.get("parameters"):
            expected.add("422")
        if "requestBody" in operation:
            expected |= {"413", "415", "422"}
        assert expected <= set(responses), (method, path, sorted(responses))
        # Unparseable JSON is a 422 like any invalid body: no route promises a 400.
        assert "400" not in responses, (method, path)
        if "requestBody" not in operation:
            assert not {"413", "415"} & set(responses), (method, path)
        for status, response in responses.items():
            if status.startswith(("4", "5")) and path != "/readyz":
                assert response["content"] == {"application/json": {"schema": ERROR}}, (
                    method,
                    path,
                    status,
                )
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert set(schemas["ErrorResponse"]["properties"]) == {"error"}
    assert schemas["ErrorInfo"]["required"] == ["code", "message", "details"]


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_operation_ids_read_well_and_the_version_is_the_packages(name: str) -> None:
    document = app_of(name).openapi()
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)*", i) for i in ids), ids
    assert document["info"]["version"] == metadata.version(f"spoc-{name}")


def test_the_ticket_operations_are_named_for_what_they_do() -> None:
    paths = app_of("intake").openapi()["paths"]
    assert paths["/api/v1/tickets"]["post"]["operationId"] == "createTicket"
    assert paths["/api/v1/tickets/{number}"]["get"]["operationId"] == "getTicket"
    assert paths["/admin/dead-letters/{message_id}"]["get"]["operationId"] == "getDeadLetter"


def test_a_service_unavailable_answer_documents_its_retry_hint() -> None:
    paths = app_of("intake").openapi()["paths"]
    unavailable = paths["/api/v1/tickets"]["post"]["responses"]["503"]
    assert unavailable["headers"]["Retry-After"]["schema"] == {"type": "integer"}


def test_the_idempotency_key_constraints_are_in_the_document() -> None:
    create = app_of("intake").openapi()["paths"]["/api/v1/tickets"]["post"]
    [header] = [p for p in create["parameters"] if p["name"] == "Idempotency-Key"]
    assert header["in"] == "header"
    [declared] = [s for s in header["schema"]["anyOf"] if s.get("type") == "string"]
    assert (declared["minLength"], declared["maxLength"]) == (1, 255)
    pattern = re.compile(declared["pattern"])
    assert pattern.fullmatch("portal-form 7f3a")
    for refused in ("é", " leading", "trailing ", "tab\there"):
        assert not pattern.fullmatch(refused), refused


@pytest.mark.parametrize(
    "key", ["k" * 256, "clé", " padded", "tab\tinside"], ids=["long", "latin", "space", "tab"]
)
async def test_a_key_outside_the_documented_constraints_is_the_documented_422(key: str) -> None:
    transport = httpx.ASGITransport(app=app_of("intake"))
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
        answer = await http.post(
            "/api/v1/tickets",
            json=NEW_TICKET,
            headers=[(b"Idempotency-Key", key.encode("latin-1"))],
        )
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == ["header.Idempotency-Key"]


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_metrics_are_documented_as_prometheus_text(name: str) -> None:
    ok = app_of(name).openapi()["paths"]["/metrics"]["get"]["responses"]["200"]
    [media_type] = ok["content"]
    assert media_type.startswith("text/plain; version=")
    assert ok["content"][media_type]["schema"] == {"type": "string"}


async def test_times_of_day_are_documented_as_what_is_served(sla: httpx.AsyncClient) -> None:
    document = (await sla.get("/openapi.json")).json()
    calendar = document["components"]["schemas"]["WorkingCalendar"]["properties"]
    opens = calendar["opens"]
    [closes] = [s for s in calendar["closes"]["anyOf"] if s.get("type") == "string"]
    for declared in (opens, closes):
        # format: time is RFC 3339's full-time, offset required; these have none.
        assert "format" not in declared
        assert declared["pattern"] == TIME_OF_DAY_PATTERN
    desk = (await sla.get("/api/v1/sla/desk", headers={"Authorization": f"Bearer {TOKEN}"})).json()
    served = [c["opens"] for c in desk["calendars"].values()]
    served += [c["closes"] for c in desk["calendars"].values() if c["closes"] is not None]
    assert "09:00:00" in served
    assert all(re.fullmatch(TIME_OF_DAY_PATTERN, t) for t in served), served


class _AssetLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v for k, v in attrs if k in {"src", "href"} and v]


@pytest.mark.parametrize(
    ("page_path", "assets"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css"}),
        ("/redoc", {"redoc.standalone.js"}),
    ],
)
async def test_the_api_docs_need_nothing_from_the_internet(
    sla: httpx.AsyncClient, page_path: str, assets: set[str]
) -> None:
    page = await sla.get(page_path)
    assert page.status_code == 200
    assert not re.search(r"(https?:)?//[a-z0-9.-]+", page.text, re.IGNORECASE), page.text
    parser = _AssetLinks()
    parser.feed(page.text)
    assert {link.rsplit("/", 1)[-1] for link in parser.links} >= assets
    for link in parser.links:
        asset = await sla.get(link)
        assert asset.status_code == 200, link
        assert asset.content, link
    assert "'/openapi.json'" in page.text or '"/openapi.json"' in page.text


async def test_the_docs_render_the_openapi_version_served(sla: httpx.AsyncClient) -> None:
    """Swagger UI before 5 refuses an OpenAPI 3.1 document ("Unable to render this definition"):
    the bundle served must be one that names 3.1 among the versions it reads."""
    served = (await sla.get("/openapi.json")).json()["openapi"]
    bundle = (await sla.get("/docs/assets/swagger-ui-bundle.js")).text
    assert served.startswith("3.1.")
    assert '"openapi: 3.1.x"' in bundle


async def test_the_docs_assets_follow_the_services_root_path() -> None:
    transport = httpx.ASGITransport(app=app_of("sla"), root_path="/sla")
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as http:
        page = await http.get("/docs")
    parser = _AssetLinks()
    parser.feed(page.text)
    assert parser.links and all(link.startswith("/sla/docs/assets/") for link in parser.links)
    assert "/sla/openapi.json" in page.text


def documented(document: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    """A validator for one of the document's schemas, its references resolved in the document."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


async def test_a_body_that_is_not_json_is_a_422_the_document_describes() -> None:
    app = app_of("intake")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
        answer = await http.post(
            "/api/v1/tickets", content=b"{oops", headers={"content-type": "application/json"}
        )
    create = app.openapi()["paths"]["/api/v1/tickets"]["post"]
    assert answer.status_code == 422
    assert create["responses"]["422"]["content"]["application/json"]["schema"] == ERROR
    documented(app.openapi(), "ErrorResponse").validate(answer.json())
    assert "field" not in answer.json()["error"]["details"][0]


def test_the_document_accepts_what_stripping_accepts() -> None:
    ticket = documented(app_of("intake").openapi(), "TicketCreate")
    padded = {
        **NEW_TICKET,
        "subject": "\t" + "s" * 200 + " ",
        "requester": {
            "name": " Ann ",
            "email": "ann@example.org",
            "phone": " +48 600 700 800 ",
            "locale": " pl ",
        },
    }
    ticket.validate(padded)
    for refused in ({"subject": " " * 3}, {"subject": "s" * 201}):
        assert not ticket.is_valid({**padded, **refused}), refused
    longest = "ab-abcdefgh-abcdefgh-abcdefgh-abcde"  # 35 characters, as many as are kept
    requester = padded["requester"]
    assert ticket.is_valid({**padded, "requester": {**requester, "locale": f" {longest} "}})
    too_long = {**requester, "locale": f" {longest}f "}
    assert not ticket.is_valid({**padded, "requester": too_long})
