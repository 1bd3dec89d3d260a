"""Per-category intake fields over HTTP (D17, "ask once"): a ticket in a category the desk
declares must answer its fields, every problem comes back in one 422, the categories are
served for forms to be built from, and staff re-categorise without inventing answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from spoc_contracts import TicketRouted
from spoc_contracts.routing import GroupRef
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, envelope, service
from tests.integration.ticket_callers import REZA, SARA, as_, client_for

pytestmark = pytest.mark.integration

DESK = """
intake:
  categories:
    - id: hardware
      name: Hardware
      fields:
        - {name: asset_tag, label: Asset tag, type: text, required: true, max_length: 16}
      subcategories:
        - id: printer
          name: Printer
          fields:
            - {name: problem, label: Problem, type: choice, required: true,
               choices: [paper jam, offline]}
            - {name: floor, label: Floor, type: number, integer: true, min: -2, max: 40}
        - {id: laptop, name: Laptop}
    - id: access
      name: Access
      subcategories:
        - id: new-account
          name: New account
          fields:
            - {name: start_date, label: Start date, type: date, required: true,
               help: The first working day}
    - {id: network, name: Network}
"""
PRINTER_TICKET: dict[str, Any] = {
    **NEW_TICKET,
    "category": "hardware",
    "subcategory": "printer",
    "fields": {"asset_tag": " HW-0042 ", "problem": "offline", "floor": 3.0},
}


@pytest.fixture
async def intake(database_url: str, tmp_path: Path) -> AsyncIterator[ServiceUnderTest]:
    desk_file = tmp_path / "desk.yaml"
    desk_file.write_text(DESK)
    async with service("intake", database_url, desk_config=desk_file) as running:
        yield running


@pytest.fixture
async def client(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(intake) as http:
        yield http


async def open_ticket(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/api/v1/tickets", json=body)


def details(answer: httpx.Response) -> list[tuple[str, str]]:
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_error"
    return [(d["field"], d["type"]) for d in error["details"]]


async def test_a_ticket_answering_its_categorys_fields_is_opened_with_them_as_stored(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    printer = await open_ticket(client, PRINTER_TICKET)
    account = await open_ticket(
        client,
        {
            **NEW_TICKET,
            "category": "access",
            "subcategory": "new-account",
            "fields": {"start_date": "2026-03-02"},
        },
    )

    assert printer.status_code == 201, printer.text
    assert account.status_code == 201, account.text
    first, second = await intake.published("ticket.created")
    # Text stripped, a whole number as an integer, the date as YYYY-MM-DD.
    assert first.data["fields"] == {"asset_tag": "HW-0042", "problem": "offline", "floor": 3}
    assert (first.data["category"], first.data["subcategory"]) == ("hardware", "printer")
    assert second.data["fields"] == {"start_date": "2026-03-02"}


async def test_every_missing_or_wrong_field_comes_back_in_one_422(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    answer = await open_ticket(
        client,
        {
            **PRINTER_TICKET,
            "fields": {"problem": "on fire", "floor": "3", "colour": "red"},
        },
    )

    assert details(answer) == [
        ("fields.asset_tag", "missing"),
        ("fields.problem", "literal_error"),
        ("fields.floor", "int_type"),
        ("fields.colour", "extra_forbidden"),
    ]
    error = answer.json()["error"]
    # The same message as any other invalid request: every field named.
    assert error["message"] == (
        "invalid request: fields.asset_tag, fields.colour, fields.floor, fields.problem"
    )
    assert "'paper jam', 'offline'" in error["details"][1]["message"]
    assert await intake.published("ticket.created") == []


async def test_a_category_or_subcategory_the_desk_does_not_declare_is_refused(
    client: httpx.AsyncClient,
) -> None:
    unknown = await open_ticket(client, {**NEW_TICKET, "category": "printers"})
    not_its_own = await open_ticket(
        client, {**PRINTER_TICKET, "subcategory": "scanner", "fields": {"asset_tag": "HW-1"}}
    )
    none_declared = await open_ticket(client, {**NEW_TICKET, "subcategory": "vpn"})
    orphan = await open_ticket(client, {**NEW_TICKET, "category": None, "subcategory": "printer"})

    assert details(unknown) == [("category", "unknown_category")]
    assert unknown.json()["error"]["details"][0]["message"] == (
        "'printers' is not a category here; one of 'hardware', 'access', 'network'"
    )
    assert details(not_its_own) == [("subcategory", "unknown_subcategory")]
    assert "one of 'printer', 'laptop'" in not_its_own.json()["error"]["details"][0]["message"]
    # The journey's ticket is in `network`, which has no subcategories.
    assert details(none_declared) == [("subcategory", "unknown_subcategory")]
    assert details(orphan) == [("subcategory", "value_error")]


async def test_a_ticket_without_a_category_sends_no_fields(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    # Fields are a category's (D17): without one they cannot be checked, so none is taken.
    body = {**NEW_TICKET, "category": None, "fields": {"asset_tag": "HW-1", "n": 1.5}}
    refused = await open_ticket(client, body)
    plain = await open_ticket(client, {**NEW_TICKET, "category": None, "fields": {"n": None}})

    assert details(refused) == [
        ("fields.asset_tag", "extra_forbidden"),
        ("fields.n", "extra_forbidden"),
    ]
    assert "send a category" in refused.json()["error"]["details"][0]["message"]
    # Routing may classify it later: a ticket without category (and fields) is still taken.
    assert plain.status_code == 201, plain.text
    [event] = await intake.published("ticket.created")
    assert (event.data["category"], event.data["fields"]) == (None, {})


async def test_a_desk_may_require_a_category(database_url: str, tmp_path: Path) -> None:
    desk_file = tmp_path / "desk.yaml"
    desk_file.write_text(DESK.replace("intake:\n", "intake:\n  category_required: true\n", 1))
    async with (
        service("intake", database_url, desk_config=desk_file) as intake,
        client_for(intake) as client,
    ):
        without = await open_ticket(client, {**NEW_TICKET, "category": None})
        within = await open_ticket(client, NEW_TICKET)

        assert details(without) == [("category", "missing")]
        assert within.status_code == 201, within.text


async def test_a_replayed_request_gets_the_same_answer(client: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "printer-form-1"}
    first = await client.post("/api/v1/tickets", json=PRINTER_TICKET, headers=key)
    again = await client.post("/api/v1/tickets", json=PRINTER_TICKET, headers=key)

    assert first.status_code == again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["number"] == first.json()["number"]


async def test_the_categories_are_served_to_anyone_for_building_forms(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get("/api/v1/categories")

    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert [c["id"] for c in items] == ["hardware", "access", "network"]
    printer = items[0]["subcategories"][0]
    assert printer["fields"] == [
        {
            "name": "problem",
            "label": "Problem",
            "type": "choice",
            "required": True,
            "help": None,
            "choices": ["paper jam", "offline"],
        },
        {
            "name": "floor",
            "label": "Floor",
            "type": "number",
            "required": False,
            "help": None,
            "min": -2,
            "max": 40,
            "integer": True,
        },
    ]
    [start] = items[1]["subcategories"][0]["fields"]
    assert (start["type"], start["help"]) == ("date", "The first working day")
    assert (start["not_before"], start["not_after"]) == (None, None)


async def route(intake: ServiceUnderTest, ticket: dict[str, Any]) -> None:
    routed = TicketRouted(
        number=ticket["number"],
        priority="P3",
        impact="medium",
        urgency="medium",
        group=GroupRef(id="service-desk", name="Service Desk", tier=1),
        owner=None,
        reason="test",
    )
    await intake.deliver(
        envelope(routed, ticket_id=uuid.UUID(ticket["id"]), source="routing", sequence=1)
    )


async def test_staff_re_categorise_to_the_desks_categories_without_new_answers(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    opened = await open_ticket(client, {**NEW_TICKET, "category": None})
    ticket = opened.json()
    await route(intake, ticket)
    path = f"/api/v1/tickets/{ticket['number']}"

    # hardware/printer asks for an asset tag and a problem: not of the agent.
    moved = await client.patch(
        path, json={"category": "hardware", "subcategory": "printer"}, headers=as_(SARA)
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["category"], moved.json()["subcategory"]) == ("hardware", "printer")

    unknown = await client.patch(path, json={"category": "vpn"}, headers=as_(SARA))
    not_its_own = await client.patch(path, json={"subcategory": "scanner"}, headers=as_(SARA))
    # The ticket keeps `printer`, which `access` does not have.
    keeps_printer = await client.patch(path, json={"category": "access"}, headers=as_(SARA))
    by_requester = await client.patch(path, json={"category": "vpn"}, headers=as_(REZA))

    assert details(unknown) == [("category", "unknown_category")]
    assert details(not_its_own) == [("subcategory", "unknown_subcategory")]
    assert details(keeps_printer) == [("category", "value_error")]
    # Only staff re-classify: a requester hears that first.
    assert by_requester.status_code == 403, by_requester.text

    both = await client.patch(
        path, json={"category": "access", "subcategory": None}, headers=as_(SARA)
    )
    assert both.status_code == 200, both.text
    updates = await intake.published("ticket.updated")
    assert [u.data["changes"] for u in updates] == [
        {"category": "hardware", "subcategory": "printer"},
        {"category": "access", "subcategory": None},
    ]


async def test_two_re_categorisations_at_once_cannot_make_a_pair_neither_allows(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    # Each alone is allowed on hardware (no subcategory); together they would make
    # access/printer. The check runs on the ticket as the update locks it: one is refused.
    for round in range(3):
        opened = await open_ticket(
            client, {**NEW_TICKET, "category": "hardware", "fields": {"asset_tag": f"HW-{round}"}}
        )
        ticket = opened.json()
        await route(intake, ticket)
        path = f"/api/v1/tickets/{ticket['number']}"

        answers = await asyncio.gather(
            client.patch(path, json={"category": "access"}, headers=as_(SARA)),
            client.patch(path, json={"subcategory": "printer"}, headers=as_(SARA)),
        )

        assert sorted(a.status_code for a in answers) == [200, 422], [a.text for a in answers]
        seen = (await client.get(path, headers=as_(SARA))).json()
        assert (seen["category"], seen["subcategory"]) in {
            ("access", None),
            ("hardware", "printer"),
        }


async def test_a_desk_without_categories_takes_tickets_as_before(database_url: str) -> None:
    async with service("intake", database_url) as intake, client_for(intake) as client:
        body = {**NEW_TICKET, "category": "anything", "subcategory": "at all", "fields": {"x": 1}}
        opened = await open_ticket(client, body)
        served = await client.get("/api/v1/categories")

        assert opened.status_code == 201, opened.text
        [event] = await intake.published("ticket.created")
        assert event.data["fields"] == {"x": 1}
        assert served.json() == {"items": []}
        await route(intake, opened.json())
        changed = await client.patch(
            f"/api/v1/tickets/{opened.json()['number']}",
            json={"category": "vpn", "subcategory": "tunnel"},
            headers=as_(SARA),
        )
        assert changed.status_code == 200, changed.text
