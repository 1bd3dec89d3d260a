"""GET /api/v1/reports/tickets: a period's tickets counted by category, priority, … with
first-contact resolution (D4, D25), as JSON and as CSV, for managers and admins only."""

from __future__ import annotations

import copy
import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from spoc.services import SERVICES, ServiceName
from spoc_contracts import TicketAssigned, TicketEscalated, TicketRouted
from spoc_contracts.routing import AgentRef, GroupRef
from spoc_intake import repository
from spoc_intake.tracking import parse_number
from spoc_platform.migrations import downgrade, upgrade
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, envelope, service
from tests.integration.ticket_callers import MINA, MONITOR, PIOTR, REZA, SARA, as_, client_for

pytestmark = pytest.mark.integration
DESK = GroupRef(id="service-desk", name="Service Desk", tier=1)
NETWORK = GroupRef(id="network", name="Network Operations", tier=2)
REPORT = "/api/v1/reports/tickets"
TODAY = datetime.now(UTC).date()


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", database_url) as running:
        yield running


@pytest.fixture
async def client(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(intake) as http:
        yield http


async def open_ticket(client: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    body = {**copy.deepcopy(NEW_TICKET), **changes}
    created = await client.post("/api/v1/tickets", json=body, headers=as_(SARA))
    assert created.status_code == 201, created.text
    ticket: dict[str, Any] = created.json()
    return ticket


async def tell(intake: ServiceUnderTest, ticket: dict[str, Any], event: Any, sequence: int) -> None:
    await intake.deliver(
        envelope(event, ticket_id=uuid.UUID(ticket["id"]), source="routing", sequence=sequence)
    )


async def route(
    intake: ServiceUnderTest,
    ticket: dict[str, Any],
    *,
    group: GroupRef = DESK,
    owner: str | None = None,
    priority: str = "P3",
) -> None:
    routed = TicketRouted(
        number=ticket["number"],
        priority=priority,
        impact="medium",
        urgency="medium",
        group=group,
        owner=AgentRef(id=owner, name=owner.title()) if owner else None,
        reason="test",
    )
    await tell(intake, ticket, routed, 1)


async def move(client: httpx.AsyncClient, ticket: dict[str, Any], to: str, by: Any = SARA) -> None:
    moved = await client.post(
        f"/api/v1/tickets/{ticket['number']}/status", json={"to": to}, headers=as_(by)
    )
    assert moved.status_code == 200, moved.text


async def created_at(intake: ServiceUnderTest, ticket: dict[str, Any], moment: datetime) -> None:
    """Moves the ticket's arrival: reports count tickets by when they came in."""
    sequence = parse_number(intake.container.settings.number_prefix, ticket["number"])
    async with intake.runtime.engine.begin() as conn:
        await conn.execute(
            update(repository.ticket)
            .where(repository.ticket.c.number == sequence)
            .values(created_at=moment)
        )


async def report(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    answer = await client.get(REPORT, params=params, headers=as_(MINA))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body: dict[str, Any] = answer.json()
    return body


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


async def test_tickets_are_counted_by_category_and_by_priority_most_first(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    for category, priority in [
        ("network", "P2"),
        ("network", "P3"),
        ("network", "P3"),
        ("hardware", "P3"),
        (None, "P1"),
    ]:
        ticket = await open_ticket(client, category=category)
        await route(intake, ticket, priority=priority)
    await open_ticket(client, category="hardware")  # not routed yet: no priority

    by_category = await report(client)

    assert by_category["by"] == ["category"]
    assert (by_category["from"], by_category["to"]) == (
        str(TODAY - timedelta(days=29)),
        str(TODAY),
    )
    assert by_category["total"] == 6
    assert by_category["rows"] == [
        {"category": "network", "count": 3, "resolved": 0, "first_contact_resolved": 0},
        {"category": "hardware", "count": 2, "resolved": 0, "first_contact_resolved": 0},
        # Uncategorised is a row like any other.
        {"category": None, "count": 1, "resolved": 0, "first_contact_resolved": 0},
    ]
    by_priority = await report(client, by="priority")
    assert [(r["priority"], r["count"]) for r in by_priority["rows"]] == [
        ("P3", 3),
        ("P1", 1),
        ("P2", 1),
        (None, 1),
    ]
    # Repeated or comma-separated, each once: one row per combination.
    both = await report(client, by=["category,priority", "category"])
    assert both["by"] == ["category", "priority"]
    assert both["rows"][0] == {
        "category": "network",
        "priority": "P3",
        "count": 2,
        "resolved": 0,
        "first_contact_resolved": 0,
    }
    assert sum(r["count"] for r in both["rows"]) == 6
    grouped = await report(client, by="group,type,channel")
    assert [(r["group"], r["type"], r["channel"], r["count"]) for r in grouped["rows"]] == [
        ("service-desk", "incident", "api", 5),
        (None, "incident", "api", 1),
    ]


async def test_the_period_is_whole_utc_days_both_ends_included(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    # A month well before the default period (the 30 days ending today).
    first = TODAY - timedelta(days=120)
    last = first + timedelta(days=30)
    moments = {
        "before": midnight(first) - timedelta(microseconds=1),
        "first": midnight(first),
        "last": midnight(last) + timedelta(hours=23, minutes=59, seconds=59),
        "after": midnight(last + timedelta(days=1)),
    }
    for name, moment in moments.items():
        ticket = await open_ticket(client, category=name)
        await created_at(intake, ticket, moment)

    month = await report(client, **{"from": str(first), "to": str(last)})

    assert (month["from"], month["to"], month["total"]) == (str(first), str(last), 2)
    assert sorted(r["category"] for r in month["rows"]) == ["first", "last"]
    # One day is a period too; and the default period holds none of these.
    day_after = str(last + timedelta(days=1))
    assert (await report(client, **{"from": day_after, "to": day_after}))["total"] == 1
    assert (await report(client))["total"] == 0
    # From alone: up to today.
    since = await report(client, **{"from": str(first - timedelta(days=1))})
    assert (since["to"], since["total"]) == (str(TODAY), 4)


async def test_first_contact_resolution_counts_the_first_owners_and_the_calls_solved_on_the_line(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    # A phone call solved while the caller was on the line: resolved at first contact.
    call = await open_ticket(
        client, channel="phone", category="vpn", resolved_during_call={"summary": "Reset it."}
    )
    await route(intake, call, owner="piotr")  # routing's owner afterwards changes nothing
    # Resolved by its first owner in a tier-1 group: first contact.
    plain = await open_ticket(client, category="vpn")
    await route(intake, plain, owner="sara")
    await move(client, plain, "resolved")
    # Escalated to tier 2, then resolved by the same owner: not first contact.
    escalated = await open_ticket(client, category="vpn")
    await route(intake, escalated, owner="sara")
    await tell(
        intake,
        escalated,
        TicketEscalated(
            number=escalated["number"],
            kind="functional",
            to_group=NETWORK,
            from_group=DESK,
            owner=AgentRef(id="sara", name="Sara"),
            reason="needs the network team",
        ),
        2,
    )
    await move(client, escalated, "resolved")
    # Resolved, reopened, resolved again: not first contact.
    reopened = await open_ticket(client, category="vpn")
    await route(intake, reopened, owner="sara")
    await move(client, reopened, "resolved")
    await move(client, reopened, "open")
    await move(client, reopened, "resolved")
    # Handed to another owner, who resolved it: not first contact.
    handed = await open_ticket(client, category="vpn")
    await route(intake, handed, owner="sara")
    handed_over = TicketAssigned(
        number=handed["number"],
        owner=AgentRef(id="piotr", name="Piotr"),
        group=DESK,
        previous_owner=AgentRef(id="sara", name="Sara"),
    )
    await tell(intake, handed, handed_over, 2)
    await tell(intake, handed, handed_over, 2)  # redelivered under a new id: still one hand-over
    await move(client, handed, "resolved", by=PIOTR)
    # A call solved on the line and then reopened: no longer first contact.
    call_reopened = await open_ticket(
        client, channel="phone", category="vpn", resolved_during_call={"summary": "Reset it."}
    )
    await move(client, call_reopened, "open")
    await move(client, call_reopened, "resolved")
    # Still open: not resolved, so not counted either way.
    waiting = await open_ticket(client, category="vpn")
    await route(intake, waiting, owner="sara")

    counted = await report(client, by="category")

    assert counted["rows"] == [
        {"category": "vpn", "count": 7, "resolved": 6, "first_contact_resolved": 2}
    ]
    assert counted["first_contact_resolution"] == {
        "resolved": 6,
        "first_contact": 2,
        "rate": 0.3333,
    }
    by_channel = {r["channel"]: r for r in (await report(client, by="channel"))["rows"]}
    assert by_channel["phone"]["first_contact_resolved"] == 1
    assert by_channel["api"]["first_contact_resolved"] == 1


async def test_a_hand_over_counts_whatever_order_routing_s_events_come_in(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await open_ticket(client, category="vpn")
    # Piotr's assignment overtakes the routing that named Sara: the stale routing is not
    # applied, but Sara had the ticket all the same.
    assigned = TicketAssigned(
        number=ticket["number"], owner=AgentRef(id="piotr", name="Piotr"), group=DESK
    )
    await tell(intake, ticket, assigned, 2)
    await route(intake, ticket, owner="sara")
    await move(client, ticket, "resolved", by=PIOTR)

    assert (await report(client))["first_contact_resolution"] == {
        "resolved": 1,
        "first_contact": 0,
        "rate": 0.0,
    }


async def test_a_closed_ticket_still_counts_as_resolved_and_an_empty_period_has_no_rate(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    empty = await report(client)
    assert empty["rows"] == [] and empty["total"] == 0
    assert empty["first_contact_resolution"] == {"resolved": 0, "first_contact": 0, "rate": None}

    ticket = await open_ticket(client, category="vpn")
    await route(intake, ticket, owner="sara")
    await move(client, ticket, "resolved")
    await move(client, ticket, "closed")

    assert (await report(client))["first_contact_resolution"] == {
        "resolved": 1,
        "first_contact": 1,
        "rate": 1.0,
    }


@pytest.mark.parametrize(
    "ask", [{"params": {"format": "csv"}}, {"headers": {"Accept": "text/csv"}}]
)
async def test_the_csv_is_a_download_with_a_header_row_and_no_formulas(
    client: httpx.AsyncClient, intake: ServiceUnderTest, ask: dict[str, dict[str, str]]
) -> None:
    for category in [
        '=HYPERLINK("http://evil.example","x")',
        '=HYPERLINK("http://evil.example","x")',
        "+1",
        "@SUM(A1)",
        "-2",
        "printer",
    ]:
        ticket = await open_ticket(client, category=category)
        await created_at(intake, ticket, midnight(date(2026, 5, 17)))
    await open_ticket(client, category="printer")  # today: outside the period

    params = {
        "from": "2026-05-01",
        "to": "2026-05-31",
        "by": "category,priority",
        **ask.get("params", {}),
    }
    answer = await client.get(
        REPORT, params=params, headers={**as_(MINA), **ask.get("headers", {})}
    )

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == (
        'attachment; filename="spoc-tickets-2026-05-01-2026-05-31.csv"'
    )
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == ["category", "priority", "count", "resolved", "first_contact_resolved"]
    assert rows[1] == ['\'=HYPERLINK("http://evil.example","x")', "", "2", "0", "0"]
    assert sorted(rows[2:]) == [
        ["'+1", "", "1", "0", "0"],
        ["'-2", "", "1", "0", "0"],
        ["'@SUM(A1)", "", "1", "0", "0"],
        ["printer", "", "1", "0", "0"],
    ]


async def test_json_is_the_default_and_format_overrides_the_accept_header(
    client: httpx.AsyncClient,
) -> None:
    asked = {"Accept": "text/csv", **as_(MINA)}
    answer = await client.get(REPORT, params={"format": "json"}, headers=asked)
    assert answer.headers["content-type"] == "application/json"
    preferred = {"Accept": "application/json, text/csv", **as_(MINA)}
    assert (await client.get(REPORT, headers=preferred)).headers["content-type"] == (
        "application/json"
    )
    assert (await client.get(REPORT, headers=as_(MINA))).headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("caller", "status"),
    [(SARA, 403), (REZA, 403), (MONITOR, 403), (None, 401)],
)
async def test_only_managers_and_admins_read_reports(
    client: httpx.AsyncClient, caller: Any, status: int
) -> None:
    answer = await client.get(REPORT, headers=as_(caller) if caller else {})

    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == ("forbidden" if status == 403 else "unauthenticated")


@pytest.mark.parametrize(
    ("params", "field", "kind"),
    [
        ({"from": "2026-03-02", "to": "2026-03-01"}, "query.to", "period_reversed"),
        ({"from": "2025-01-01", "to": "2026-01-02"}, "query.from", "period_too_long"),
        ({"from": str(TODAY + timedelta(days=1))}, "query.from", "period_reversed"),
        ({"to": "2026-02-30"}, "query.to", None),
        ({"from": "yesterday"}, "query.from", None),
        ({"to": "1700000000"}, "query.to", None),
        ({"by": "category,owner"}, "query.by.0", None),
        ({"format": "xlsx"}, "query.format", None),
    ],
)
async def test_a_bad_period_or_dimension_is_a_422_naming_the_parameter(
    client: httpx.AsyncClient, params: dict[str, str], field: str, kind: str | None
) -> None:
    answer = await client.get(REPORT, params=params, headers=as_(MINA))

    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == [field]
    if kind is not None:
        assert error["details"][0]["type"] == kind


async def test_a_full_year_of_366_days_is_a_period(client: httpx.AsyncClient) -> None:
    leap = await report(client, **{"from": "2028-01-01", "to": "2028-12-31"})
    assert leap["total"] == 0


async def flags(intake: ServiceUnderTest) -> list[tuple[Any, ...]]:
    ticket = repository.ticket
    query = select(ticket.c.handed_over, ticket.c.escalated, ticket.c.reopened).order_by(
        ticket.c.number
    )
    async with intake.runtime.engine.connect() as conn:
        return [tuple(row) for row in (await conn.execute(query)).all()]


async def test_the_upgrade_reads_earlier_tickets_histories_from_their_timelines(
    client: httpx.AsyncClient, intake: ServiceUnderTest, database_url: str
) -> None:
    plain = await open_ticket(client, category="vpn")
    await route(intake, plain, owner="sara")
    await move(client, plain, "resolved")
    # Taken from the group's queue: its first owner, not a hand-over.
    queued = await open_ticket(client, category="vpn")
    await route(intake, queued)
    taken = TicketAssigned(
        number=queued["number"], owner=AgentRef(id="sara", name="Sara"), group=DESK
    )
    await tell(intake, queued, taken, 2)
    await move(client, queued, "resolved")
    handed = await open_ticket(client, category="vpn")
    await route(intake, handed, owner="sara")
    to_piotr = TicketAssigned(
        number=handed["number"],
        owner=AgentRef(id="piotr", name="Piotr"),
        group=DESK,
        previous_owner=AgentRef(id="sara", name="Sara"),
    )
    await tell(intake, handed, to_piotr, 2)
    escalated = await open_ticket(client, category="vpn")
    await route(intake, escalated, owner="sara")
    referred = TicketEscalated(
        number=escalated["number"], kind="hierarchical", to_group=NETWORK, reason="breach"
    )
    await tell(intake, escalated, referred, 2)
    reopened = await open_ticket(client, category="vpn")
    await route(intake, reopened, owner="sara")
    await move(client, reopened, "resolved")
    await move(client, reopened, "open")
    kept = await flags(intake)
    assert kept == [
        (False, False, False),
        (False, False, False),
        (True, False, False),
        (False, True, False),
        (False, False, True),
    ]
    counted = await report(client)

    migrations = SERVICES[ServiceName.intake].migrations
    await intake.runtime.engine.dispose()
    # One step back: this revision (0011 when written), whatever number it lands under.
    downgrade(migrations, database_url, "-1")
    upgrade(migrations, database_url)

    assert await flags(intake) == kept
    assert await report(client) == counted
    assert counted["first_contact_resolution"] == {"resolved": 2, "first_contact": 2, "rate": 1.0}


@pytest.mark.parametrize(
    "params",
    [
        {"from": "9999-12-31", "to": "9999-12-31"},
        {"from": "0001-01-01", "to": "0001-01-01"},
        {"to": "0001-01-01"},
        {"from": "9999-01-01"},
        {"from": "2026-02-30"},
        {"from": "２０２６-01-01"},
        {"by": "category,category,group", "format": "csv"},
    ],
)
async def test_odd_periods_are_a_report_or_a_422_never_a_500(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    answer = await client.get(REPORT, params=params, headers=as_(MINA))
    assert answer.status_code in (200, 422), answer.text
    assert answer.headers["content-type"].startswith(("application/json", "text/csv"))


async def test_the_upgrade_does_not_call_a_re_triage_after_a_take_a_hand_over(
    client: httpx.AsyncClient, intake: ServiceUnderTest, database_url: str
) -> None:
    queued = await open_ticket(client, category="vpn")
    await route(intake, queued)
    taken = TicketAssigned(
        number=queued["number"], owner=AgentRef(id="sara", name="Sara"), group=DESK
    )
    await tell(intake, queued, taken, 2)
    # An agent re-categorises it: routing triages it again and names the owner it has.
    retriaged = TicketRouted(
        number=queued["number"],
        priority="P2",
        impact="high",
        urgency="medium",
        group=DESK,
        owner=AgentRef(id="sara", name="Sara"),
        reason="re-triaged after a change of impact",
    )
    await tell(intake, queued, retriaged, 3)
    kept = await flags(intake)
    assert kept == [(False, False, False)]

    migrations = SERVICES[ServiceName.intake].migrations
    await intake.runtime.engine.dispose()
    downgrade(migrations, database_url, "-1")
    upgrade(migrations, database_url)
    assert await flags(intake) == kept
