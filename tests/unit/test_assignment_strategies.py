"""Who in a group gets a ticket (issue 8): shifts in their own time zone, night shifts and days
off; the desk file's checks on them; and the ranking each strategy makes of the members with
room."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from spoc_routing.assignment import ranked, why
from spoc_routing.desk import RoutingDesk
from spoc_routing.shifts import Shift

NIGHT = Shift(
    timezone="Europe/Warsaw",
    days=("mon", "tue", "wed", "thu", "fri"),
    starts=time(22),
    ends=time(6),
)


def warsaw(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo("Europe/Warsaw"))


@pytest.mark.parametrize(
    ("moment", "on_duty"),
    [
        (warsaw(2026, 12, 7, 22, 0), True),  # Monday 22:00: the shift starts
        (warsaw(2026, 12, 8, 5, 59), True),  # Tuesday 05:59: Monday's shift runs on
        (warsaw(2026, 12, 8, 6, 0), False),  # Tuesday 06:00: it has ended
        (warsaw(2026, 12, 7, 21, 59), False),
        (warsaw(2026, 12, 12, 23, 0), False),  # Saturday night: no shift starts on Saturday
        (warsaw(2026, 12, 12, 3, 0), True),  # Saturday 03:00: Friday's shift runs on
        (warsaw(2026, 12, 7, 3, 0), False),  # Monday 03:00: Sunday had no shift
    ],
)
def test_a_night_shift_runs_past_midnight_into_the_next_day(
    moment: datetime, on_duty: bool
) -> None:
    assert NIGHT.on_duty(moment.astimezone(UTC)) is on_duty


def test_a_day_off_cancels_the_shift_that_starts_on_it_and_nothing_else() -> None:
    shift = NIGHT.model_copy(update={"days_off": frozenset({date(2026, 12, 24)})})
    assert not shift.on_duty(warsaw(2026, 12, 24, 23, 0))  # Christmas Eve's shift: off
    assert not shift.on_duty(warsaw(2026, 12, 25, 2, 0))
    assert shift.on_duty(warsaw(2026, 12, 24, 2, 0))  # the 23rd's shift running on: worked


def test_a_day_shift_is_read_in_its_own_time_zone() -> None:
    tehran = Shift(
        timezone="Asia/Tehran",
        days=("sat", "sun", "mon", "tue", "wed"),
        starts=time(8),
        ends=time(16),
    )
    # Saturday 05:00 UTC is 08:30 in Tehran: on duty; Thursday is not a working day there.
    assert tehran.on_duty(datetime(2026, 12, 5, 5, 0, tzinfo=UTC))
    assert not tehran.on_duty(datetime(2026, 12, 5, 4, 0, tzinfo=UTC))
    assert not tehran.on_duty(datetime(2026, 12, 3, 6, 0, tzinfo=UTC))


def test_the_default_shift_is_every_hour_of_every_day() -> None:
    assert all(
        Shift().on_duty(datetime(2026, 12, d, h, tzinfo=UTC))
        for d in range(1, 8)
        for h in range(24)
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"groups": [{"id": "service-desk", "name": "SD", "shift": "nights"}]},
            "groups.service-desk: shift 'nights' is not among the shifts",
        ),
        (
            {
                "groups": [
                    {
                        "id": "service-desk",
                        "name": "SD",
                        "agents": [{"id": "sara", "name": "S", "shift": "x"}],
                    }
                ]
            },
            "groups.service-desk.agents.sara: shift 'x' is not among the shifts",
        ),
        (
            {
                "groups": [
                    {"id": "service-desk", "name": "SD", "agents": [{"id": "sara", "name": "S"}]},
                    {"id": "network", "name": "N", "agents": [{"id": "sara", "name": "S"}]},
                ]
            },
            "agents: 'sara' is declared twice",
        ),
        ({"shifts": {"nights": {"timezone": "Mars/Olympus"}}}, "unknown time zone 'Mars/Olympus'"),
        (
            {"shifts": {"nights": {"days": ["mon", "fri", "caturday"]}}},
            "unknown weekdays ['caturday']",
        ),
        ({"groups": [{"id": "service-desk", "name": "SD", "strategy": "random"}]}, "strategy"),
    ],
)
def test_the_desk_file_names_what_is_wrong_with_shifts_and_strategies(
    section: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RoutingDesk.model_validate(section)


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    open_tickets: int = 0
    capacity: int | None = None
    assigned_count: int = 0
    position: int = 0
    last_assigned_at: datetime | None = None


NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def desk(**group: Any) -> RoutingDesk:
    return RoutingDesk.model_validate(
        {
            "shifts": {"nights": NIGHT.model_dump()},
            "groups": [
                {
                    "id": "service-desk",
                    "name": "Service Desk",
                    "agents": [
                        {"id": "sara", "name": "Sara Ahmadi", "skills": ["printers"]},
                        {"id": "piotr", "name": "Piotr Nowak", "skills": ["network", "vpn"]},
                        {"id": "lena", "name": "Lena Berg", "skills": ["network"]},
                        {"id": "omid", "name": "Omid Rahimi", "shift": "nights"},
                    ],
                    **group,
                }
            ],
        }
    )


def test_least_loaded_weighs_open_tickets_against_each_ones_capacity() -> None:
    routing = desk()
    group = routing.groups[0]
    members = [
        Member("sara", "Sara Ahmadi", open_tickets=3, capacity=4),  # 75 % full
        Member("piotr", "Piotr Nowak", open_tickets=4, capacity=10, position=1),  # 40 %
        Member("lena", "Lena Berg", open_tickets=2, position=2),  # no limit: against 10, 20 %
    ]
    order = ranked(members, group, routing, now=NOW)
    assert [m.id for m in order] == ["lena", "piotr", "sara"]
    assert (
        why(order[0], group, routing) == "Lena Berg has the lightest load in Service Desk (2 open)"
    )


def test_nobody_off_shift_is_ranked() -> None:
    routing = desk()
    group = routing.groups[0]
    members = [Member("omid", "Omid Rahimi"), Member("sara", "Sara Ahmadi", open_tickets=9)]
    # Wednesday noon in Warsaw: the night shift is off; at 23:00 it is on.
    assert [m.id for m in ranked(members, group, routing, now=NOW)] == ["sara"]
    night = datetime(2026, 12, 2, 22, 30, tzinfo=UTC)
    assert [m.id for m in ranked(members, group, routing, now=night)] == ["omid", "sara"]


def test_skill_match_prefers_who_has_most_of_what_the_ticket_needs_then_the_lightest_load() -> None:
    routing = desk(strategy="skill_match")
    group = routing.groups[0]
    members = [
        Member("sara", "Sara Ahmadi"),
        Member("lena", "Lena Berg", open_tickets=1, position=2),
        Member("piotr", "Piotr Nowak", open_tickets=5, position=1),
    ]
    order = ranked(members, group, routing, skills=["network", "vpn"], now=NOW)
    assert [m.id for m in order] == ["piotr", "lena", "sara"]
    assert why(order[0], group, routing, skills=["network", "vpn"]) == (
        "Piotr Nowak has the skills it needs (network, vpn)"
    )
    # Nobody with room has them all: the most of them, and the reason says what is lacking.
    order = ranked(members[:2], group, routing, skills=["network", "vpn"], now=NOW)
    assert why(order[0], group, routing, skills=["network", "vpn"]) == (
        "Lena Berg has 1 of the 2 skills it needs, the most of anyone in Service Desk with "
        "room (lacks vpn)"
    )
    # A ticket that needs nothing in particular goes to the lightest load.
    assert [m.id for m in ranked(members, group, routing, now=NOW)] == ["sara", "lena", "piotr"]


@given(st.lists(st.integers(0, 3), min_size=1, max_size=6), st.integers(1, 5))
def test_round_robin_gives_each_member_a_turn_before_anyone_a_second(
    loads: list[int], rounds: int
) -> None:
    routing = desk(strategy="round_robin")
    group = routing.groups[0]
    members = {
        f"a{i}": Member(f"a{i}", f"Agent {i}", open_tickets=load, position=i)
        for i, load in enumerate(loads)
    }
    given_to: list[str] = []
    for tick in range(rounds * len(members)):
        first = ranked(members.values(), group, routing, now=NOW)[0]
        given_to.append(first.id)
        members[first.id] = Member(
            first.id,
            first.name,
            open_tickets=first.open_tickets + 1,
            position=first.position,
            last_assigned_at=datetime(2026, 12, 2, 12, tick % 60, tick // 60, tzinfo=UTC),
        )
    # Whatever their loads, each gets exactly `rounds`, in the same order every round.
    assert all(given_to.count(m) == rounds for m in members)
    assert given_to[: len(members)] * rounds == given_to
