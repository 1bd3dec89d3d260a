"""Every service keeps the promises of its own OpenAPI document, checked by Schemathesis with all
its default checks (status codes, content types, headers, response schemas, invalid data refused,
valid data accepted, …), each service as deployed embedded: SQLite and the in-process bus."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from spoc.services import SERVICES, ServiceName
from spoc_intake.api.deps import IDEMPOTENCY_KEY_PATTERN
from spoc_platform.migrations import upgrade

pytestmark = pytest.mark.integration

TOKEN = "an-admin-token-long-enough-not-to-be-guessed"
# Enough for Hypothesis to reach each operation's edges while a service takes seconds, not minutes.
EXAMPLES = 30

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


@pytest.fixture(scope="module")
def app_of(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppOf]:
    """Each service's app on a migrated SQLite file, built on first use; Schemathesis runs its
    lifespan, so the consumer, relay and workers run as in the embedded default."""
    apps: dict[str, FastAPI] = {}

    def app(name: str) -> FastAPI:
        if name not in apps:
            data: Path = tmp_path_factory.mktemp(name)
            url = f"sqlite+aiosqlite:///{data / 'service.sqlite3'}"
            upgrade(SERVICES[ServiceName(name)].migrations, url)
            apps[name] = build_app(name, url)
        return apps[name]

    yield app


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
        case.call_and_validate(app=app_of(name), headers={"Authorization": f"Bearer {TOKEN}"})

    return test


test_intake_keeps_its_document = conformance_test("intake")
test_routing_keeps_its_document = conformance_test("routing")
test_sla_keeps_its_document = conformance_test("sla")
test_notify_keeps_its_document = conformance_test("notify")
