"""SLA state in intake: agents list breached and at-risk tickets, soonest due first, and see each
clock's state and the notifications sent; requesters see neither. sla's events arrive late,
twice and out of order, and the state still ends where the facts say."""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from spoc.services import SERVICES, ServiceName
from spoc_contracts import (
    ClockTarget,
    Envelope,
    Event,
    NotificationFailed,
    NotificationSent,
    SlaBreached,
    SlaClockStarted,
    SlaClockUpdated,
    SlaMet,
    SlaWarning,
)
from spoc_intake.models import Ticket as TicketRow
from spoc_intake.tracking import format_number
from spoc_platform.bus import PoisonMessage
from spoc_platform.db import UtcDateTime, create_engine
from spoc_platform.migrations import upgrade
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, envelope, service
from tests.integration.ticket_callers import MINA, MONITOR, REZA, SARA, as_, client_for

pytestmark = pytest.mark.integration
# In the past: what notify reports without a moment of its own is dated now, after these.
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
QueryPairs = list[tuple[str, str | int | float | bool | None]]
SLA_KINDS = {"sla_clock_updated", "sla_warning", "sla_breached", "sla_met"}


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", database_url) as running:
        yield running


@pytest.fixture
async def client(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(intake) as http:
        yield http


@dataclass
class Ticket:
    """One ticket and a numbered stream of sla's events about it."""

    intake: ServiceUnderTest
    id: uuid.UUID
    number: str
    access_key: str

    async def hears(self, event: Event, *, sequence: int, source: str = "sla") -> Envelope:
        message = envelope(event, ticket_id=self.id, source=source, sequence=sequence)
        await self.intake.deliver(message)
        return message

    async def clocks_start(
        self, *, sequence: int = 1, first_response: int = 30, resolution: int = 480
    ) -> None:
        clocks = [
            ClockTarget(metric=metric, due_at=NOW + timedelta(minutes=minutes), target_seconds=60)
            for metric, minutes in (("first_response", first_response), ("resolution", resolution))
        ]
        started = SlaClockStarted(
            number=self.number, priority="P2", policy="standard", calendar="office", clocks=clocks
        )
        await self.hears(started, sequence=sequence)

    def warning(self, metric: str, minutes: int) -> SlaWarning:
        return SlaWarning(
            number=self.number,
            metric=metric,
            due_at=NOW + timedelta(minutes=minutes),
            percent_elapsed=80,
        )

    def breached(self, metric: str, minutes: int, *, at_minutes: int | None = None) -> SlaBreached:
        due = NOW + timedelta(minutes=minutes)
        breached_at = NOW + timedelta(minutes=at_minutes) if at_minutes is not None else due
        return SlaBreached(
            number=self.number, metric=metric, priority="P2", due_at=due, breached_at=breached_at
        )

    def met(self, metric: str, minutes: int, *, at_minutes: int) -> SlaMet:
        return SlaMet(
            number=self.number,
            metric=metric,
            due_at=NOW + timedelta(minutes=minutes),
            met_at=NOW + timedelta(minutes=at_minutes),
        )

    def updated(self, metric: str, state: str, minutes: int | None) -> SlaClockUpdated:
        return SlaClockUpdated(
            number=self.number,
            metric=metric,
            state=state,
            due_at=NOW + timedelta(minutes=minutes) if minutes is not None else None,
            reason="test",
        )


async def open_ticket(
    client: httpx.AsyncClient, intake: ServiceUnderTest, subject: str = "VPN drops"
) -> Ticket:
    body = copy.deepcopy(NEW_TICKET)
    body["subject"] = subject
    body["requester"]["phone"] = "+989121234567"
    created = await client.post("/api/v1/tickets", json=body)
    assert created.status_code == 201, created.text
    ticket = created.json()
    return Ticket(intake, uuid.UUID(ticket["id"]), ticket["number"], ticket["access_key"])


async def agent_view(client: httpx.AsyncClient, ticket: Ticket) -> dict[str, Any]:
    read = await client.get(f"/api/v1/tickets/{ticket.number}", headers=as_(MINA))
    assert read.status_code == 200, read.text
    seen: dict[str, Any] = read.json()
    return seen


async def sla_of(client: httpx.AsyncClient, ticket: Ticket) -> dict[str, Any]:
    sla: dict[str, Any] = (await agent_view(client, ticket))["sla"]
    return sla


async def listed(
    client: httpx.AsyncClient, *params: tuple[str, str | int | float | bool | None]
) -> list[str]:
    answer = await client.get("/api/v1/tickets", params=list(params), headers=as_(MINA))
    assert answer.status_code == 200, answer.text
    return [item["number"] for item in answer.json()["items"]]


def same_moment(value: str | None, minutes: int) -> bool:
    return value is not None and datetime.fromisoformat(value) == NOW + timedelta(minutes=minutes)


async def test_staff_list_breached_and_at_risk_tickets_soonest_due_first(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    calm = await open_ticket(client, intake, "calm")
    await calm.clocks_start()
    late_risk = await open_ticket(client, intake, "resolution at risk")
    await late_risk.clocks_start(first_response=400)
    await late_risk.hears(late_risk.warning("resolution", 480), sequence=2)
    soon_risk = await open_ticket(client, intake, "first response at risk")
    await soon_risk.clocks_start(first_response=20)
    await soon_risk.hears(soon_risk.warning("first_response", 20), sequence=2)
    overdue = await open_ticket(client, intake, "breached and at risk")
    await overdue.clocks_start(first_response=-10)
    await overdue.hears(overdue.breached("first_response", -10), sequence=2)
    await overdue.hears(overdue.warning("resolution", 480), sequence=3)
    unclocked = await open_ticket(client, intake, "no clocks yet")

    at_risk = ("sla", "at_risk")
    breached = ("sla", "breached")
    by_due = ("sort", "sla_due_at")
    # A ticket is listed under its most urgent clock: a breach is not also "at risk".
    assert await listed(client, at_risk, by_due) == [soon_risk.number, late_risk.number]
    assert await listed(client, breached) == [overdue.number]
    needing_attention = [overdue.number, soon_risk.number, late_risk.number]
    assert await listed(client, at_risk, breached, by_due) == needing_attention
    assert await listed(client, at_risk, breached, ("sort", "-sla_due_at")) == list(
        reversed(needing_attention)
    )
    # The nearest due time of any clock counting down; tickets with none come last.
    assert await listed(client, by_due) == [
        overdue.number,
        soon_risk.number,
        calm.number,
        late_risk.number,
        unclocked.number,
    ]
    # With the other filters, and a page at a time along the due times.
    assert await listed(client, at_risk, ("q", "first response")) == [soon_risk.number]
    assert await listed(client, breached, ("status", "resolved")) == []
    pages: list[str] = []
    cursor: str | None = None
    while True:
        params: QueryPairs = [at_risk, breached, by_due, ("limit", "1")]
        answer = await client.get(
            "/api/v1/tickets",
            params=params + ([("cursor", cursor)] if cursor else []),
            headers=as_(MINA),
        )
        assert answer.status_code == 200, answer.text
        pages += [item["number"] for item in answer.json()["items"]]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            break
    assert pages == needing_attention
    # An agent's list is still held to their groups: these tickets are unrouted, so Sara sees them.
    sara = await client.get("/api/v1/tickets", params=[breached], headers=as_(SARA))
    assert [item["number"] for item in sara.json()["items"]] == [overdue.number]


@pytest.mark.parametrize("caller", [REZA, MONITOR], ids=["requester", "integration"])
@pytest.mark.parametrize(
    "params",
    [[("sla", "breached")], [("sort", "sla_due_at")]],
    ids=["filter", "sort"],
)
async def test_the_sla_filter_and_sort_are_refused_to_anyone_but_staff(
    client: httpx.AsyncClient, caller: Any, params: QueryPairs
) -> None:
    answer = await client.get("/api/v1/tickets", params=params, headers=as_(caller))
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_error"
    assert [d["type"] for d in error["details"]] == ["staff_only"]
    unknown = await client.get("/api/v1/tickets", params={"sla": "late"}, headers=as_(MINA))
    assert unknown.status_code == 422


async def test_agents_see_each_clock_and_the_notifications_and_requesters_see_neither(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await open_ticket(client, intake)
    await ticket.clocks_start()
    await ticket.hears(ticket.breached("first_response", 30, at_minutes=31), sequence=2)
    await ticket.hears(ticket.warning("resolution", 480), sequence=3)
    sent = NotificationSent(
        number=ticket.number,
        notification_id="n1",
        kind="acknowledgement",
        channel="email",
        recipient="Reza@Example.org",
        sent_at=NOW + timedelta(minutes=1),
    )
    failed = NotificationFailed(
        number=ticket.number,
        notification_id="n2",
        kind="sla_breach",
        channel="sms",
        recipient="+441234567890",
        attempts=5,
        error="unreachable",
    )
    await ticket.hears(sent, sequence=1, source="notify")
    await ticket.hears(failed, sequence=2, source="notify")

    seen = await agent_view(client, ticket)
    sla = seen["sla"]
    assert sla["state"] == "breached"
    first, resolution = sla["first_response"], sla["resolution"]
    assert first["state"] == "breached" and first["met_at"] is None
    assert same_moment(first["due_at"], 30) and same_moment(first["breached_at"], 31)
    assert resolution["state"] == "at_risk" and same_moment(resolution["due_at"], 480)
    assert resolution["breached_at"] is None and resolution["met_at"] is None
    notifications = [{k: n[k] for k in n if k != "at"} for n in seen["notifications"]]
    assert notifications == [
        {
            "kind": "acknowledgement",
            "channel": "email",
            "recipient": "Reza@Example.org",
            "recipient_kind": "requester",
            "outcome": "sent",
            "attempts": None,
            "error": None,
        },
        {
            "kind": "sla_breach",
            "channel": "sms",
            "recipient": "+441234567890",
            "recipient_kind": "other",
            "outcome": "failed",
            "attempts": 5,
            "error": "unreachable",
        },
    ]
    internal = {e["kind"] for e in seen["timeline"] if not e["public"]}
    assert {"sla_breached", "sla_warning", "notification_failed"} <= internal

    for headers in (as_(REZA), {"X-Access-Key": ticket.access_key}):
        public = await client.get(f"/api/v1/tickets/{ticket.number}", headers=headers)
        assert public.status_code == 200, public.text
        body = public.json()
        assert "sla" not in body and "notifications" not in body
        assert not SLA_KINDS & {e["kind"] for e in body["timeline"]}
        # The targets stay public, as they always were.
        assert same_moment(body["targets"]["first_response_due_at"], 30)


async def test_a_late_warning_never_turns_a_breach_back_into_at_risk(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await open_ticket(client, intake)
    await ticket.clocks_start()
    await ticket.hears(ticket.breached("first_response", 30), sequence=4)
    # Sent before the breach, delivered after it: the run they belong to has stopped.
    await ticket.hears(ticket.warning("first_response", 30), sequence=2)
    # A re-time sent before the breach moves neither the state nor the due time it was
    # breached against.
    await ticket.hears(ticket.updated("first_response", "running", 600), sequence=3)

    first = (await sla_of(client, ticket))["first_response"]
    assert first["state"] == "breached" and same_moment(first["due_at"], 30)
    assert await listed(client, ("sla", "breached")) == [ticket.number]
    assert await listed(client, ("sla", "at_risk")) == []
    # Every fact is still in the agents' history.
    kinds = [e["kind"] for e in (await agent_view(client, ticket))["timeline"]]
    assert kinds.count("sla_warning") == 1 and kinds.count("sla_clock_updated") == 1


async def test_a_met_clock_stays_met_whatever_comes_late(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await open_ticket(client, intake)
    await ticket.clocks_start()
    await ticket.hears(ticket.met("first_response", 30, at_minutes=12), sequence=4)
    # Going facts of the same run, sent before the met and delivered after it.
    await ticket.hears(ticket.warning("first_response", 30), sequence=2)
    await ticket.hears(ticket.updated("first_response", "running", 90), sequence=3)
    # A breach dated after the target was met does not undo it.
    await ticket.hears(ticket.breached("first_response", 30), sequence=5)
    # A late clock_started (an earlier sequence) neither.
    await ticket.clocks_start(sequence=1, first_response=45)

    sla = await sla_of(client, ticket)
    first = sla["first_response"]
    assert first["state"] == "met" and same_moment(first["met_at"], 12)
    assert same_moment(first["due_at"], 30)
    # The resolution clock is still running and is the ticket's state.
    assert sla["state"] == "running" and sla["resolution"]["state"] == "running"


# The resolution met (the ticket resolved), sla restarting the clock (the requester reopened
# it) and the new run's breach, numbered in that order and delivered in every order.
RERUN = ("met", "restart", "breach")


@pytest.mark.parametrize(
    "arrival", list(itertools.permutations(RERUN)), ids=lambda order: "-".join(order)
)
async def test_a_clock_sla_restarts_runs_again_and_its_later_breach_counts(
    client: httpx.AsyncClient, intake: ServiceUnderTest, arrival: tuple[str, ...]
) -> None:
    ticket = await open_ticket(client, intake)
    await ticket.clocks_start()
    facts = {
        "met": (ticket.met("resolution", 480, at_minutes=100), 2),
        "restart": (ticket.updated("resolution", "running", 900), 3),
        "breach": (ticket.breached("resolution", 900), 4),
    }
    for name in arrival:
        event, sequence = facts[name]
        await ticket.hears(event, sequence=sequence)

    resolution = (await sla_of(client, ticket))["resolution"]
    assert resolution["state"] == "breached"
    assert same_moment(resolution["breached_at"], 900) and resolution["met_at"] is None
    assert same_moment(resolution["due_at"], 900)
    assert await listed(client, ("sla", "breached")) == [ticket.number]


async def test_a_restarted_clock_counts_down_until_its_new_run_stops(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await open_ticket(client, intake)
    await ticket.clocks_start(first_response=30)
    await ticket.hears(ticket.met("first_response", 30, at_minutes=5), sequence=2)
    await ticket.hears(ticket.breached("resolution", 480), sequence=3)
    # Restarted by a newer clock_started: both clocks run again, towards the new due times.
    await ticket.clocks_start(sequence=5, first_response=600, resolution=700)
    sla = await sla_of(client, ticket)
    assert sla["state"] == "running" and sla["first_response"]["met_at"] is None
    assert sla["resolution"]["state"] == "running" and sla["resolution"]["breached_at"] is None
    assert await listed(client, ("sla", "breached")) == []
    # A stop of the earlier run, delivered late, belongs to that run.
    await ticket.hears(ticket.breached("first_response", 30), sequence=4)
    await ticket.hears(ticket.warning("resolution", 700), sequence=6)
    sla = await sla_of(client, ticket)
    assert sla["first_response"]["state"] == "running" and sla["state"] == "at_risk"
    assert await listed(client, ("sla", "at_risk")) == [ticket.number]
    # The new run's met stops it again.
    await ticket.hears(ticket.met("resolution", 700, at_minutes=650), sequence=7)
    assert (await sla_of(client, ticket))["resolution"]["state"] == "met"


async def move(client: httpx.AsyncClient, ticket: Ticket, to: str) -> None:
    moved = await client.post(
        f"/api/v1/tickets/{ticket.number}/status", json={"to": to}, headers=as_(SARA)
    )
    assert moved.status_code == 200, moved.text


async def test_a_resolved_ticket_s_clocks_neither_list_it_nor_sort_it_until_it_reopens(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    working = await open_ticket(client, intake, "still open")
    await working.clocks_start(first_response=60)
    solved = await open_ticket(client, intake, "solved at once")
    await solved.clocks_start(first_response=10)
    by_due = ("sort", "sla_due_at")
    assert await listed(client, by_due) == [solved.number, working.number]

    # Resolved: its clocks (sla's word, still running) count down no more for the desk...
    await move(client, solved, "resolved")
    assert await listed(client, by_due) == [working.number, solved.number]
    # ...nor does what sla says after (a warning, or a phone call's clocks started after it
    # was solved during the call).
    await solved.hears(solved.warning("first_response", 10), sequence=2)
    sla = await sla_of(client, solved)
    assert sla["state"] == "paused" and sla["first_response"]["state"] == "at_risk"
    assert await listed(client, ("sla", "at_risk")) == []
    assert await listed(client, by_due) == [working.number, solved.number]

    # Reopened: they count again.
    await move(client, solved, "open")
    assert (await sla_of(client, solved))["state"] == "at_risk"
    assert await listed(client, ("sla", "at_risk")) == [solved.number]
    assert await listed(client, by_due) == [solved.number, working.number]
    await move(client, solved, "resolved")
    await move(client, solved, "closed")
    assert await listed(client, ("sla", "at_risk")) == []
    assert await listed(client, by_due) == [working.number, solved.number]


@pytest.mark.parametrize("breach_first", [True, False], ids=["breach-then-met", "met-then-breach"])
async def test_a_target_met_late_stays_breached_in_either_arrival_order(
    client: httpx.AsyncClient, intake: ServiceUnderTest, breach_first: bool
) -> None:
    ticket = await open_ticket(client, intake)
    await ticket.clocks_start()
    breach = ticket.breached("resolution", 480)
    met = ticket.met("resolution", 480, at_minutes=500)
    for event, sequence in ((breach, 2), (met, 3)) if breach_first else ((met, 3), (breach, 2)):
        await ticket.hears(event, sequence=sequence)

    resolution = (await sla_of(client, ticket))["resolution"]
    assert resolution["state"] == "breached"
    assert same_moment(resolution["breached_at"], 480) and same_moment(resolution["met_at"], 500)


async def test_clock_updates_follow_the_newest_sequence_per_metric(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await open_ticket(client, intake)
    await ticket.clocks_start()
    await ticket.hears(ticket.warning("resolution", 480), sequence=2)
    # Re-timed after the warning: the clock runs again towards the new due time.
    await ticket.hears(ticket.updated("resolution", "running", 900), sequence=4)
    # A pause sent before the re-time, delivered after it: stale, ignored.
    await ticket.hears(ticket.updated("resolution", "paused", None), sequence=3)
    # A late fact about the other metric is not lost to the resolution's newer sequence.
    await ticket.hears(ticket.warning("first_response", 30), sequence=3)

    sla = await sla_of(client, ticket)
    assert sla["resolution"]["state"] == "running"
    assert same_moment(sla["resolution"]["due_at"], 900)
    assert sla["first_response"]["state"] == "at_risk" and sla["state"] == "at_risk"

    # A pause keeps the last due time (the requester's target stays) and leaves the list.
    await ticket.hears(ticket.updated("first_response", "paused", None), sequence=5)
    await ticket.hears(ticket.updated("resolution", "paused", None), sequence=6)
    sla = await sla_of(client, ticket)
    assert sla["state"] == "paused" and same_moment(sla["first_response"]["due_at"], 30)
    assert await listed(client, ("sla", "at_risk")) == []
    # sla's own word that a clock stopped counts as the fact.
    await ticket.hears(ticket.updated("first_response", "met", 30), sequence=7)
    assert (await sla_of(client, ticket))["first_response"]["state"] == "met"


async def test_a_duplicate_delivery_changes_nothing(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await open_ticket(client, intake)
    await ticket.clocks_start()
    breach = await ticket.hears(ticket.breached("first_response", 30), sequence=2)
    sent = await ticket.hears(
        NotificationSent(
            number=ticket.number,
            notification_id="n1",
            kind="update",
            channel="email",
            recipient="reza@example.org",
            sent_at=NOW,
        ),
        sequence=1,
        source="notify",
    )
    before = await agent_view(client, ticket)

    for message in (breach, sent):
        await intake.deliver(message, delivery_count=1)
    after = await agent_view(client, ticket)
    assert after["sla"] == before["sla"] and after["updated_at"] == before["updated_at"]
    assert after["timeline"] == before["timeline"]
    assert len(after["notifications"]) == 1
    assert [e["kind"] for e in after["timeline"]].count("sla_breached") == 1


async def test_an_sla_event_about_an_unknown_ticket_is_dead_lettered(
    intake: ServiceUnderTest,
) -> None:
    stranger = Ticket(intake, uuid.uuid4(), "SD-999999", "")
    with pytest.raises(PoisonMessage, match="does not have"):
        await stranger.hears(stranger.breached("first_response", 30), sequence=1)


async def test_the_upgrade_gives_earlier_tickets_their_running_clocks(database_url: str) -> None:
    """Tickets from before migration 0007 had only clock_started's due times and the ticket's
    sla sequence: their clocks run (counting for the desk unless the ticket is settled), and
    each metric starts from that sequence, so a redelivered clock_started changes nothing."""
    migrations = SERVICES[ServiceName.intake].migrations
    upgrade(migrations, database_url, "0006")
    before = sa.table(
        "ticket",
        sa.column("id", sa.Uuid()),
        *(
            sa.column(name)
            for name in (
                "number",
                "subject",
                "description",
                "type",
                "channel",
                "requester_name",
                "requester_email",
                "preferred_channel",
                "access_key_hash",
                "status",
                "routing_sequence",
                "sla_sequence",
            )
        ),
        sa.column("fields", sa.JSON()),
        sa.column("created_at", UtcDateTime()),
        sa.column("updated_at", UtcDateTime()),
        sa.column("first_response_due_at", UtcDateTime()),
        sa.column("resolution_due_at", UtcDateTime()),
    )
    at = {minutes: NOW + timedelta(minutes=minutes) for minutes in (30, 480)}
    # (status, sla sequence, first response due, resolution due)
    rows = [
        ("open", 3, at[30], at[480]),
        ("pending", 1, None, at[480]),
        ("resolved", 2, at[30], at[480]),
        ("closed", 1, at[30], None),
        ("new", 0, None, None),
    ]
    ids = [uuid.uuid4() for _ in rows]
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            for number, (ticket_id, (status, sequence, first, resolution)) in enumerate(
                zip(ids, rows, strict=True), start=1
            ):
                await conn.execute(
                    sa.insert(before).values(
                        id=ticket_id,
                        number=number,
                        subject="Old",
                        description="From before 0007.",
                        type="incident",
                        channel="portal",
                        requester_name="Someone",
                        requester_email="someone@example.org",
                        preferred_channel="email",
                        access_key_hash="0" * 64,
                        status=status,
                        routing_sequence=0,
                        sla_sequence=sequence,
                        fields={},
                        created_at=NOW,
                        updated_at=NOW,
                        first_response_due_at=first,
                        resolution_due_at=resolution,
                    )
                )

        upgrade(migrations, database_url)

        async with engine.connect() as conn:
            after = (
                await conn.execute(
                    sa.select(
                        TicketRow.first_response_state,
                        TicketRow.first_response_sequence,
                        TicketRow.resolution_state,
                        TicketRow.resolution_sequence,
                        TicketRow.sla_state,
                        TicketRow.sla_due_at,
                    ).order_by(TicketRow.number)
                )
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in after] == [
        ("running", 3, "running", 3, "running", at[30]),
        (None, 1, "running", 1, "running", at[480]),
        # Settled: sla's clocks still run, but not for the desk's list.
        ("running", 2, "running", 2, "paused", None),
        ("running", 1, None, 1, "paused", None),
        (None, 0, None, 0, None, None),
    ]

    async with service("intake", database_url) as intake:
        old = Ticket(intake, ids[0], format_number("SD", 1), "")
        await old.clocks_start(sequence=3, first_response=45)
        await old.hears(old.warning("first_response", 30), sequence=4)
        async with client_for(intake) as client:
            sla = await sla_of(client, old)
            assert same_moment(sla["first_response"]["due_at"], 30)
            assert sla["first_response"]["state"] == "at_risk"
            assert await listed(client, ("sla", "at_risk")) == [old.number]
            # Reopened, the resolved one's clocks count again.
            await move(client, Ticket(intake, ids[2], format_number("SD", 3), ""), "open")
            assert (await listed(client, ("sort", "sla_due_at")))[:2] == [
                old.number,
                format_number("SD", 3),
            ]
