"""Every service keeps the promises of its own OpenAPI document, checked by Schemathesis with all
its default checks (status codes, content types, headers, response schemas, invalid data refused,
valid data accepted, …), each service as deployed embedded: SQLite and the in-process bus.

Intake, whose routes read the caller's credential before their input, is fuzzed twice, once
anonymously and once with a real bearer token it issued (a made-up token is a 401 before any
input is looked at), and on PostgreSQL as well as SQLite."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from pydantic import ValidationError
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from spoc.services import SERVICES, ServiceName
from spoc_intake.api.deps import IDEMPOTENCY_KEY_PATTERN
from spoc_intake.bootstrap import bootstrap
from spoc_intake.reports import period_of
from spoc_intake.tokens import create_token
from spoc_platform.migrations import upgrade
from spoc_platform.web import ApiError
from spoc_routing.desk import RoutingDesk
from tests.support import create_postgres_database, drop_postgres_database

pytestmark = pytest.mark.integration

TOKEN = "an-admin-token-long-enough-not-to-be-guessed"
# Enough for Hypothesis to reach each operation's edges while a service takes seconds, not minutes.
EXAMPLES = 30
# Intake runs four times (two databases, two callers): fewer each keeps the file near 2 minutes.
INTAKE_EXAMPLES = 10

AppOf = Callable[[str], FastAPI]

# Schemathesis's own list of statuses that count as refusing invalid data, and 413: a body made
# invalid by being too long (10,001 ids) may also be too large to read at all.
REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [*REFUSALS, "5xx"]}}}
)


def build_app(name: str, database_url: str) -> FastAPI:
    entry = SERVICES[ServiceName(name)]
    service_settings = entry.settings(database_url=database_url, bus="memory", admin_token=TOKEN)
    app: FastAPI = entry.create_app(service_settings)
    return app


def document_of(name: str) -> dict[str, Any]:
    # Building the app opens no connection: a database that does not exist does for the document.
    return build_app(name, "sqlite+aiosqlite:////nonexistent/openapi-only.sqlite3").openapi()


def migrated_app(name: str, url: str) -> FastAPI:
    upgrade(SERVICES[ServiceName(name)].migrations, url)
    return build_app(name, url)


@pytest.fixture(scope="module")
def app_of(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppOf]:
    """Each service's app on a migrated SQLite file, built on first use; Schemathesis runs its
    lifespan, so the consumer, relay and workers run as in the embedded default."""
    apps: dict[str, FastAPI] = {}

    def app(name: str) -> FastAPI:
        if name not in apps:
            data: Path = tmp_path_factory.mktemp(name)
            apps[name] = migrated_app(name, f"sqlite+aiosqlite:///{data / 'service.sqlite3'}")
        return apps[name]

    yield app


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def intake_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """As `database_url`, but one database for every operation of the module: a fresh
    PostgreSQL database migrated per operation would cost more than the fuzzing itself."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('intake') / 'service.sqlite3'}"
        return
    url = asyncio.run(create_postgres_database("spoc_test"))
    try:
        yield url
    finally:
        asyncio.run(drop_postgres_database(url))


@dataclass(frozen=True)
class Intake:
    app: FastAPI
    # A live admin token issued by intake itself, as `spoc token create` makes one.
    token: str


@pytest.fixture(scope="module")
def intake(intake_database: str) -> Intake:
    app = migrated_app("intake", intake_database)

    async def issue() -> str:
        # Its own container, closed here: the app's engine must not hold connections of this
        # event loop when Schemathesis drives the app on its own.
        container = bootstrap(app.state.container.settings)
        try:
            issued = await create_token(
                container.runtime.unit_of_work, role="admin", name="schemathesis"
            )
        finally:
            await container.runtime.engine.dispose()
        return issued.token

    return Intake(app=app, token=asyncio.run(issue()))


def unique_idempotency_key(case: schemathesis.Case) -> None:
    """A key already used with another body is refused (422) by design; that memory spans
    requests, which a one-request check cannot know, so each valid key is made unique."""
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key) and len(key) <= 255:
        case.headers["Idempotency-Key"] = f"{key[:200]}-{uuid.uuid4()}"


def conformance_test(name: str) -> Callable[..., None]:
    schema = schemathesis.openapi.from_dict(document_of(name), config=CONFIG)

    @schema.parametrize()
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def test(case: schemathesis.Case, app_of: AppOf) -> None:
        unique_idempotency_key(case)
        if case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE:
            a_desk_section_that_holds_together(case)
        case.call_and_validate(app=app_of(name), headers={"Authorization": f"Bearer {TOKEN}"})

    return test


# Staff-only values of fields the one document offers every caller: from the public they are
# refused with a 422 naming the field (tests/integration/test_front_door.py,
# test_ticket_conversation.py), which Schemathesis cannot know is the caller's doing.
DESK_CHANNELS = {"phone", "email"}


def as_the_public_may_send(case: schemathesis.Case) -> None:
    """Keeps a valid case valid for an anonymous caller: no desk channel, no visibility."""
    body = case.body
    if not isinstance(body, dict):
        return
    if case.path == "/api/v1/tickets" and body.get("channel") in DESK_CHANNELS:
        body["channel"] = "portal"
    if case.path == "/api/v1/tickets":
        body.pop("resolved_during_call", None)  # staff log phone calls
    if case.path.endswith("/comments"):
        body.pop("visibility", None)


def without_a_made_up_cursor(case: schemathesis.Case) -> None:
    """A cursor is opaque (only one the list gave out is valid, else a 422 `invalid_cursor`):
    no valid one can be generated, so a valid case lists from the start."""
    if isinstance(case.query, dict):
        case.query.pop("cursor", None)


def with_an_uncommon_password(case: schemathesis.Case) -> None:
    """A new password among the first an attacker tries is refused (422 `weak_password`, see
    tests/unit/test_passwords.py); no schema can list them, so a valid case gets a rare one."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("password"), str):
        if case.method in {"POST", "PUT"} and case.path.startswith("/api/v1/staff"):
            body["password"] = f"fuzz-{uuid.uuid4()}"


def within_a_report_period(case: schemathesis.Case) -> None:
    """Dates each valid alone may still make no period together (`to` before `from`, or more
    than 366 days: a 422 naming the parameter, tests/integration/test_ticket_reports.py),
    which no schema can say: a valid case with such a pair asks for the default period."""
    if case.path != "/api/v1/reports/tickets" or not isinstance(case.query, dict):
        return
    try:
        first, last = (case.query.get(name) for name in ("from", "to"))
        period_of(
            date.fromisoformat(first) if isinstance(first, str) else None,
            date.fromisoformat(last) if isinstance(last, str) else None,
            today=datetime.now(UTC).date(),
        )
    except (ApiError, ValueError):
        case.query.pop("from", None)
        case.query.pop("to", None)


def a_desk_section_that_holds_together(case: schemathesis.Case) -> None:
    """Routing's desk section refers to itself (the default group among the groups, a rule's
    group, a shift, no id twice: a 422 naming each, tests/integration/test_routing_desk_admin.py),
    which no schema can say: a valid case whose references do not hold sends the defaults."""
    if not case.path.startswith("/api/v1/routing/desk") or not isinstance(case.body, dict):
        return
    try:
        RoutingDesk.model_validate(case.body)
    except ValidationError:
        case.body = {}


def intake_conformance_test(*, with_token: bool) -> Callable[..., None]:
    schema = schemathesis.openapi.from_dict(document_of("intake"), config=CONFIG)

    @schema.parametrize()
    @settings(
        max_examples=INTAKE_EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def test(case: schemathesis.Case, intake: Intake) -> None:
        unique_idempotency_key(case)
        if case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE:
            without_a_made_up_cursor(case)
            within_a_report_period(case)
            with_an_uncommon_password(case)
            if not with_token:
                as_the_public_may_send(case)
        headers: dict[str, str] = {}
        if with_token:
            # Intake's tokens open its API; its admin routes take the configured admin token.
            admin = case.path.startswith("/admin/")
            headers["Authorization"] = f"Bearer {TOKEN if admin else intake.token}"
        case.call_and_validate(app=intake.app, headers=headers)

    return test


test_intake_keeps_its_document_anonymously = intake_conformance_test(with_token=False)
test_intake_keeps_its_document_with_a_token = intake_conformance_test(with_token=True)
test_routing_keeps_its_document = conformance_test("routing")
test_sla_keeps_its_document = conformance_test("sla")
test_notify_keeps_its_document = conformance_test("notify")
