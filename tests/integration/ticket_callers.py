"""Who a test request speaks as, in one place: today a dependency override keyed by a test
header; once staff tokens exist, `as_` can return a real `Authorization` header instead."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import Request

from spoc_intake.api.deps import current_caller
from spoc_intake.app import create_app
from spoc_intake.callers import ANONYMOUS, Caller
from tests.harness import ServiceUnderTest

SARA = Caller(
    role="agent",
    subject_id="sara",
    name="Sara Ahmadi",
    groups=frozenset({"service-desk"}),
    credential_id="t1",
)
PIOTR = Caller(
    role="agent",
    subject_id="piotr",
    name="Piotr Nowak",
    groups=frozenset({"network"}),
    credential_id="t2",
)
MINA = Caller(role="manager", subject_id="mina", name="Mina Rad", credential_id="t3")
MONITOR = Caller(role="integration", subject_id="monitor", name="Monitoring", credential_id="t4")
REZA = Caller(
    role="requester", subject_id="reza@example.org", email="reza@example.org", credential_id="s1"
)
OLGA = Caller(
    role="requester", subject_id="olga@example.org", email="olga@example.org", credential_id="s2"
)
PEOPLE = {c.subject_id: c for c in (SARA, PIOTR, MINA, MONITOR, REZA, OLGA)}
HEADER = "X-Test-Caller"


def as_(caller: Caller) -> dict[str, str]:
    """The headers a request carries to speak as `caller`."""
    return {HEADER: caller.subject_id or ""}


async def _caller_from_test_header(request: Request) -> Caller:
    return PEOPLE.get(request.headers.get(HEADER, ""), ANONYMOUS)


@asynccontextmanager
async def client_for(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on intake's app, where `as_(...)` headers choose the caller."""
    app = create_app(intake.container.settings, intake.container, manage_runtime=False)
    app.dependency_overrides[current_caller] = _caller_from_test_header
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://intake"
    ) as http:
        yield http
