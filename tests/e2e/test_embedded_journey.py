"""The first journey on the embedded default: one process, SQLite, the in-memory bus, Maildir."""

from __future__ import annotations

import asyncio
import mailbox
import uuid
from collections.abc import AsyncIterator
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from spoc.embedded import EmbeddedDesk, build_desk, running
from spoc_contracts import Envelope
from spoc_intake.schemas import TicketCreate
from spoc_platform.bus import DeadLetter, OutgoingMessage
from tests.e2e.journey import (
    acknowledged_view,
    agent_works_the_ticket,
    assert_acknowledgement,
    assert_requester_view,
    open_ticket,
    operator_creates_agent,
)
from tests.e2e.stored_time import an_hour_passes
from tests.support import eventually, until_notify_is_idle

pytestmark = pytest.mark.e2e
PORTAL = "http://desk.example.org"


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[EmbeddedDesk]:
    built = build_desk(tmp_path / "data", portal_url=PORTAL)
    async with running(built) as started:
        yield started


@pytest.fixture
async def client(desk: EmbeddedDesk) -> AsyncIterator[httpx.AsyncClient]:
    from spoc.embedded import create_embedded_app

    app = create_embedded_app(desk)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://desk") as http:
        yield http


def mails(desk: EmbeddedDesk) -> list[object]:
    box = mailbox.Maildir(desk.maildir, create=True)
    return [message_from_bytes(box.get_bytes(key), policy=default) for key in box.keys()]


async def test_a_new_ticket_is_routed_clocked_and_acknowledged_once(
    desk: EmbeddedDesk, client: httpx.AsyncClient
) -> None:
    created = await open_ticket(client)

    view = await acknowledged_view(client, created)

    assert_requester_view(view, created)
    await until_notify_is_idle(desk.notify.runtime.engine)
    sent = mails(desk)
    assert len(sent) == 1
    assert_acknowledgement(sent[0], created, PORTAL)


async def test_an_agent_works_the_ticket_and_the_requester_confirms_and_rates_it(
    desk: EmbeddedDesk, client: httpx.AsyncClient
) -> None:
    # On the running desk's own data folder, as an operator beside `spoc up` would.
    await asyncio.to_thread(operator_creates_agent, ["--data-dir", str(desk.data_dir)])
    created = await open_ticket(client)
    await acknowledged_view(client, created)

    await agent_works_the_ticket(client, created)


async def test_redelivered_events_do_not_send_a_second_acknowledgement(
    desk: EmbeddedDesk, client: httpx.AsyncClient
) -> None:
    created = await open_ticket(client)
    await acknowledged_view(client, created)
    published = await _published_envelopes(desk, created["id"])
    duplicates_before = _notify_duplicates()

    # The broker may deliver any event again; here every event of the journey comes twice.
    for envelope in published:
        await desk.bus.publish(
            OutgoingMessage(str(envelope.id), envelope.type, envelope.model_dump_json().encode())
        )
    await eventually(lambda: _idle(desk), message="duplicates not consumed", timeout=10)
    await until_notify_is_idle(desk.notify.runtime.engine)

    assert _notify_duplicates() == duplicates_before + 2  # ticket.created, sla.clock_started
    assert len(mails(desk)) == 1
    view = await acknowledged_view(client, created)
    assert len(view["timeline"]) == 4


def _notify_duplicates() -> float:
    return sum(
        REGISTRY.get_sample_value(
            "spoc_events_consumed_total",
            {"service": "notify", "type": event_type, "outcome": "duplicate"},
        )
        or 0.0
        for event_type in ("ticket.created", "sla.clock_started")
    )


async def _idle(desk: EmbeddedDesk) -> bool:
    return all(desk.bus.depth(s) == 0 for s in ("intake", "routing", "sla", "notify"))


async def _published_envelopes(desk: EmbeddedDesk, ticket_id: str) -> list[Envelope]:
    from sqlalchemy import select

    envelopes: list[Envelope] = []
    for runtime in desk.runtimes:
        outbox = runtime.tables.outbox
        async with runtime.engine.connect() as conn:
            rows = await conn.execute(
                select(outbox.c.body).where(outbox.c.ticket_id == uuid.UUID(ticket_id))
            )
            envelopes += [Envelope.model_validate_json(body) for (body,) in rows]
    assert {e.type for e in envelopes} == {
        "ticket.created",
        "ticket.routed",
        "sla.clock_started",
        "notification.sent",
    }
    return envelopes


async def test_the_portal_link_swaps_the_key_for_a_cookie_and_shows_the_ticket(
    desk: EmbeddedDesk, client: httpx.AsyncClient
) -> None:
    created = await open_ticket(client)
    await acknowledged_view(client, created)

    link = await client.get(f"/t/{created['number']}", params={"key": created["access_key"]})
    assert link.status_code == 303
    assert link.headers["location"] == f"/t/{created['number']}"
    page = await client.get(link.headers["location"])

    assert page.status_code == 200
    assert created["number"] in page.text and "Service Desk" in page.text
    client.cookies.clear()
    assert (await client.get(f"/t/{created['number']}")).status_code == 404


async def test_tickets_accepted_just_before_a_stop_are_acknowledged_after_the_restart(
    tmp_path: Path,
) -> None:
    """The in-memory bus forgets on exit; the outbox must make up for it."""
    data = tmp_path / "data"
    first = build_desk(data, portal_url=PORTAL)
    async with running(first):
        numbers = [
            (await first.intake.tickets.create(_new_ticket(), idempotency_key=None)).body["number"]
            for _ in range(20)
        ]
    # Stopped at once: most of the journey was still in flight on the in-memory bus.

    again = build_desk(data, portal_url=PORTAL)
    async with running(again):

        async def all_acknowledged() -> bool:
            return len(mails(again)) >= len(numbers)

        await eventually(all_acknowledged, timeout=20, message="not every ticket acknowledged")
        await eventually(lambda: _idle(again), timeout=10, message="bus not idle")
        await until_notify_is_idle(again.notify.runtime.engine)
    acknowledged = sorted(m["X-Spoc-Ticket"] for m in mails(again))  # type: ignore[index]
    assert acknowledged == sorted(numbers)  # each once: no loss, no duplicate


def _new_ticket() -> TicketCreate:
    from tests.e2e.journey import NEW_TICKET

    return TicketCreate.model_validate(NEW_TICKET)


async def test_tickets_in_flight_at_a_stop_are_acknowledged_once_after_a_restart_an_hour_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped at an arbitrary moment under load, with handlers still running (a stop that
    gives up on them at once), then started again an hour later: nothing lost, nothing twice."""
    import spoc_platform.runtime

    monkeypatch.setattr(spoc_platform.runtime, "STOP_TIMEOUT", 0.01)
    data = tmp_path / "data"
    first = build_desk(data, portal_url=PORTAL)
    async with running(first):
        numbers = [
            (await first.intake.tickets.create(_new_ticket(), idempotency_key=None)).body["number"]
            for _ in range(30)
        ]

        async def some_acknowledged() -> bool:
            return len(mails(first)) >= 1

        await eventually(some_acknowledged, timeout=20, message="no ticket acknowledged")
    in_flight_at_stop = len(numbers) - len(mails(first))
    assert in_flight_at_stop > 0  # the stop really interrupted the journeys
    an_hour_passes(data)

    again = build_desk(data, portal_url=PORTAL)
    async with running(again):

        async def all_acknowledged() -> bool:
            return len(mails(again)) >= len(numbers)

        await eventually(all_acknowledged, timeout=30, message="not every ticket acknowledged")
        await eventually(lambda: _idle(again), timeout=10, message="bus not idle")
        await until_notify_is_idle(again.notify.runtime.engine)
    acknowledged = sorted(m["X-Spoc-Ticket"] for m in mails(again))  # type: ignore[index]
    assert acknowledged == sorted(numbers)  # each once: no loss, no duplicate


async def test_a_dead_letter_survives_a_restart_and_is_replayed_to_its_own_service_only(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    first = build_desk(data, portal_url=PORTAL)
    async with running(first):
        # Not an envelope at all: every service bound to ticket.created refuses it for good.
        await first.bus.publish(OutgoingMessage("m-garbled", "ticket.created", b"not json"))

        async def dead_in_routing() -> list[DeadLetter]:
            return await first.bus.dead_letters("routing")

        await eventually(dead_in_routing, message="not dead-lettered")
    an_hour_passes(data)

    again = build_desk(data, portal_url=PORTAL)
    async with running(again):
        [dead] = await again.bus.dead_letters("routing")
        notify_dead = await again.bus.dead_letters("notify")
        assert (dead.message_id, dead.routing_key, dead.body) == (
            "m-garbled",
            "ticket.created",
            b"not json",
        )
        assert dead.attempts == 1 and dead.dead_at is not None

        assert await again.bus.replay_dead_letters("routing", ["m-garbled"]) == 1

        async def dead_again() -> list[DeadLetter]:
            letters = await again.bus.dead_letters("routing")
            return [d for d in letters if d.dead_at != dead.dead_at]

        [replayed] = await eventually(dead_again, message="replay not consumed")
        assert replayed.message_id == "m-garbled" and replayed.attempts == 1
        assert await again.bus.dead_letters("notify") == notify_dead  # routing's queue only
        assert await again.bus.purge_dead_letters("routing") == 1
    third = build_desk(data, portal_url=PORTAL)
    async with running(third):
        assert await third.bus.dead_letters("routing") == []
        assert await third.bus.dead_letters("notify") == notify_dead
