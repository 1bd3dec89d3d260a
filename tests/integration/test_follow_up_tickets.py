"""A requester's reply that comes too late for its ticket (closed, or resolved longer ago than
the reopen window) opens a new ticket linked to the old one; within the window a reply joins
the ticket as before. Only the ticket's requester gets there: anyone else still gets a 404."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from spoc_intake import repository
from spoc_platform.db import utc_now
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, service
from tests.integration.test_ticket_workflow import move, route, ticket_in
from tests.integration.ticket_callers import MONITOR, OLGA, REZA, SARA, as_, client_for

pytestmark = pytest.mark.integration
LATE = "The VPN drops again since this morning, same as last month."


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", database_url) as running:
        yield running


@pytest.fixture
async def client(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(intake) as http:
        yield http


def by_key(ticket: dict[str, Any]) -> dict[str, str]:
    return {"X-Access-Key": ticket["access_key"]}


async def resolved_long_ago(client: httpx.AsyncClient, intake: ServiceUnderTest) -> dict[str, Any]:
    ticket = await ticket_in(client, intake, "resolved")
    async with intake.runtime.engine.begin() as conn:
        await repository.update_ticket(
            conn, uuid.UUID(ticket["id"]), resolved_at=utc_now() - timedelta(days=8)
        )
    return ticket


async def reply(
    client: httpx.AsyncClient, ticket: dict[str, Any], headers: dict[str, str], body: str = LATE
) -> httpx.Response:
    return await client.post(
        f"/api/v1/tickets/{ticket['number']}/comments", json={"body": body}, headers=headers
    )


async def view(client: httpx.AsyncClient, number: str, headers: dict[str, str]) -> dict[str, Any]:
    seen = await client.get(f"/api/v1/tickets/{number}", headers=headers)
    assert seen.status_code == 200, seen.text
    ticket: dict[str, Any] = seen.json()
    return ticket


async def test_a_reply_to_a_closed_ticket_opens_a_new_one_linked_to_it(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    old = await ticket_in(client, intake, "closed")
    before = await view(client, old["number"], as_(SARA))

    answer = await reply(client, old, by_key(old))

    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["number"] != old["number"] and created["access_key"]
    assert (created["status"], created["follows_up"]) == ("new", old["number"])
    assert answer.headers["Location"].endswith(f"/api/v1/tickets/{created['number']}")
    # The requester reads the new ticket with its own key.
    new = await view(client, created["number"], by_key(created))
    assert new["follows_up"] == old["number"]
    assert (new["subject"], new["description"]) == (f"Re: {before['subject']}", LATE)
    assert (new["type"], new["category"], new["channel"]) == ("incident", "network", "api")
    assert new["requester"]["name"] == before["requester"]["name"]
    assert new["comments"] == []
    # The old ticket stays closed, without the reply, and its history points to the new one.
    after = await view(client, old["number"], by_key(old))
    assert (after["status"], after["comments"]) == ("closed", before["comments"])
    assert after["follows_up"] is None
    last = after["timeline"][-1]
    assert last["kind"] == "followed_up_by" and created["number"] in last["summary"]
    assert "closed" in last["summary"]
    # One new ticket, no reply on the old one; the agent sees the link too.
    created_events = await intake.published("ticket.created")
    assert [e.data["follows_up"] for e in created_events] == [None, old["number"]]
    assert created_events[-1].data["requester"]["email"] == "reza@example.org"
    assert await intake.published("ticket.commented") == []
    assert (await view(client, created["number"], as_(SARA)))["follows_up"] == old["number"]


async def test_a_reply_after_the_reopen_window_opens_a_new_ticket_by_the_portal(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    old = await resolved_long_ago(client, intake)

    answer = await reply(client, old, as_(REZA))

    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["follows_up"] == old["number"]
    new = await view(client, created["number"], as_(REZA))
    assert (new["follows_up"], new["channel"], new["status"]) == (old["number"], "portal", "new")
    after = await view(client, old["number"], as_(REZA))
    assert after["status"] == "resolved"
    last = after["timeline"][-1]
    assert last["kind"] == "followed_up_by" and created["number"] in last["summary"]
    assert "reopen window" in last["summary"]
    assert await intake.published("ticket.commented") == []


async def test_within_the_window_a_reply_still_joins_the_resolved_ticket(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    old = await ticket_in(client, intake, "resolved")

    answer = await reply(client, old, by_key(old), body="Thanks, it works now.")

    assert answer.status_code == 201, answer.text
    assert answer.json()["author"]["kind"] == "requester" and "follows_up" not in answer.json()
    after = await view(client, old["number"], by_key(old))
    assert after["status"] == "resolved"
    assert [c["body"] for c in after["comments"]] == ["Thanks, it works now."]
    assert len(await intake.published("ticket.created")) == 1
    [commented] = await intake.published("ticket.commented")
    assert commented.data["number"] == old["number"]


async def test_a_retried_late_reply_opens_one_ticket_and_shows_its_key_again(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    old = await ticket_in(client, intake, "closed")
    headers = {**by_key(old), "Idempotency-Key": "late-reply-1"}

    first = await reply(client, old, headers)
    again = await reply(client, old, headers)
    other_body = await reply(client, old, headers, body="Something else entirely.")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json() and again.json()["access_key"]
    assert other_body.status_code == 422
    assert other_body.json()["error"]["code"] == "idempotency_key_reused"
    assert len(await intake.published("ticket.created")) == 2
    timeline = (await view(client, old["number"], by_key(old)))["timeline"]
    assert [e["kind"] for e in timeline].count("followed_up_by") == 1


async def test_someone_elses_late_ticket_is_still_not_found(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    closed = await ticket_in(client, intake, "closed")
    expired = await resolved_long_ago(client, intake)

    for ticket in (closed, expired):
        for headers in ({}, as_(OLGA), {"X-Access-Key": "guessed"}):
            answer = await reply(client, ticket, headers)
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"]["code"] == "ticket_not_found"
        assert (await reply(client, ticket, as_(MONITOR))).status_code == 403
    assert len(await intake.published("ticket.created")) == 2


async def test_staff_still_cannot_reply_on_a_closed_ticket(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    old = await ticket_in(client, intake, "closed")

    answer = await reply(client, old, as_(SARA), body="One more thing.")

    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "ticket_closed"
    assert len(await intake.published("ticket.created")) == 1


async def test_without_anonymous_intake_a_late_reply_by_key_alone_opens_nothing(
    database_url: str,
) -> None:
    async with service("intake", database_url) as intake, client_for(intake) as client:
        old = await ticket_in(client, intake, "closed")
        open_one = await ticket_in(client, intake, "in_progress")
    async with (
        service("intake", database_url, anonymous_intake=False) as intake,
        client_for(intake) as client,
    ):
        # What intake published is read from its outbox: the two tickets opened above.
        before = len(await intake.published("ticket.created"))
        anonymous = await reply(client, old, by_key(old))
        # As create_ticket answers an anonymous caller: sign in by link.
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.json()["error"]["code"] == "unauthenticated"
        assert "sign in" in anonymous.json()["error"]["message"]
        assert len(await intake.published("ticket.created")) == before
        # A reply that joins its ticket is no new ticket: still taken by key.
        assert (await reply(client, open_one, by_key(open_one))).status_code == 201
        # The requester signed in by link is known: the follow-up opens.
        signed_in = await reply(client, old, as_(REZA))
        assert signed_in.status_code == 201, signed_in.text
        assert signed_in.json()["follows_up"] == old["number"]


async def test_an_anonymous_follow_up_spends_a_new_tickets_budget_once_and_a_replay_none(
    database_url: str,
) -> None:
    async with service("intake", database_url) as intake, client_for(intake) as client:
        old = await ticket_in(client, intake, "closed")
        open_one = await ticket_in(client, intake, "in_progress")
    # Not trusted any more: the test client's requests spend from the client's budget.
    limits = {"rate_limit_per_client": "3/minute", "rate_limit_per_recipient": "100/minute"}
    async with (
        service("intake", database_url, trusted_networks="", **limits) as intake,
        client_for(intake) as client,
    ):
        before = len(await intake.published("ticket.created"))
        keyed = {**by_key(old), "Idempotency-Key": "late-1"}
        answers = [
            await reply(client, open_one, by_key(open_one)),  # a reply: 1
            await reply(client, old, keyed),  # a follow-up, not also a reply: 2
            await reply(client, old, keyed),  # its replay: nothing
            await reply(client, old, keyed),
            await reply(client, old, by_key(old), body="And the printer too."),  # 3
            await reply(client, old, by_key(old), body="And the scanner."),
            await reply(client, open_one, by_key(open_one)),
        ]

        assert [a.status_code for a in answers] == [201, 201, 201, 201, 201, 429, 429]
        assert answers[2].headers["Idempotent-Replayed"] == "true"
        assert answers[5].json()["error"]["code"] == "rate_limited"
        assert len(await intake.published("ticket.created")) == before + 2
        assert len(await intake.published("ticket.commented")) == 1


CATEGORIES_THEN = """
intake:
  categories:
    - id: hardware
      name: Hardware
      fields:
        - {name: asset_tag, label: Asset tag, type: text, required: true}
      subcategories:
        - id: printer
          name: Printer
          fields:
            - {name: problem, label: Problem, type: choice, choices: [paper jam, offline]}
    - id: access
      name: Access
      fields:
        - {name: start_date, label: Start date, type: date}
"""
# Later: printer and access are gone, the asset tag is shorter and hardware asks a new question.
CATEGORIES_NOW = """
intake:
  categories:
    - id: hardware
      name: Hardware
      fields:
        - {name: asset_tag, label: Asset tag, type: text, required: true, max_length: 8}
        - {name: model, label: Model, type: text, required: true}
        - {name: floor, label: Floor, type: number}
    - {id: network, name: Network}
"""


async def test_a_follow_up_keeps_only_the_classification_the_desk_still_declares(
    database_url: str, tmp_path: Path
) -> None:
    desk = tmp_path / "desk.yaml"
    desk.write_text(CATEGORIES_THEN)
    printer = {"category": "hardware", "subcategory": "printer"}
    async with (
        service("intake", database_url, desk_config=desk) as intake,
        client_for(intake) as client,
    ):
        olds = []
        for classified in (
            {**printer, "fields": {"asset_tag": "HW-42", "problem": "offline"}},
            {**printer, "fields": {"asset_tag": "HW-0000042"}},
            {"category": "access", "fields": {"start_date": "2026-03-02"}},
        ):
            created = await client.post("/api/v1/tickets", json={**NEW_TICKET, **classified})
            assert created.status_code == 201, created.text
            await route(intake, created.json())
            for step in ("resolved", "closed"):
                assert (await move(client, created.json(), step)).status_code == 200
            olds.append(created.json())
    desk.write_text(CATEGORIES_NOW)
    async with (
        service("intake", database_url, desk_config=desk) as intake,
        client_for(intake) as client,
    ):
        answers = [await reply(client, old, by_key(old)) for old in olds]

        # Never a 422 for a reply: what no longer belongs is dropped, nothing is asked for.
        assert [a.status_code for a in answers] == [201, 201, 201], [a.text for a in answers]
        kept = [
            (e.data["category"], e.data["subcategory"], e.data["fields"])
            for e in (await intake.published("ticket.created"))[len(olds) :]
        ]
        assert kept == [
            ("hardware", None, {"asset_tag": "HW-42"}),
            ("hardware", None, {}),
            (None, None, {}),
        ]
