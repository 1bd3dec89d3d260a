"""Dates shown to people: in the recipient's language, on a named clock (spoc_platform.dates),
in the acknowledgement mail and on the requester's page."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ValidationError

from spoc_notify.compose import Acknowledgement, acknowledgement_message
from spoc_platform.dates import TimeZoneSetting, for_people, preferred_locale

pytestmark = pytest.mark.unit
DUE = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("locale", "zone", "expected"),
    [
        (
            "pl-PL",
            "Europe/Warsaw",
            "pon., 23 lis 2026, 13:00 (czas środkowoeuropejski standardowy)",
        ),
        ("fa-IR", "Asia/Tehran", "دوشنبه 23 نوامبر 2026،\u200f 15:30 (وقت عادی ایران)"),
        ("en-GB", "UTC", "Mon, 23 Nov 2026, 12:00 (Coordinated Universal Time)"),
        ("en", "America/New_York", "Mon, Nov 23, 2026, 7:00\u202fAM (Eastern Standard Time)"),
    ],
    ids=["Polish in Warsaw", "Persian in Tehran", "British English in UTC", "US English"],
)
def test_a_moment_reads_in_the_recipients_language_on_the_named_clock(
    locale: str, zone: str, expected: str
) -> None:
    assert for_people(DUE, locale=locale, zone=zone) == expected


def test_an_unknown_or_missing_locale_falls_back_to_english() -> None:
    english = "Mon, Nov 23, 2026, 12:00\u202fPM (Coordinated Universal Time)"
    assert for_people(DUE, locale="xx-YY", zone="UTC") == english
    assert for_people(DUE, locale=None, zone="UTC") == english


def test_a_time_zone_setting_must_name_a_real_zone() -> None:
    class Desk(BaseModel):
        time_zone: TimeZoneSetting

    assert Desk(time_zone="Asia/Tehran").time_zone == "Asia/Tehran"
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        Desk(time_zone="Mars/Olympus")


def test_the_browsers_first_known_language_by_quality_is_preferred() -> None:
    assert preferred_locale("fa-IR,fa;q=0.9,en;q=0.5") == "fa-IR"
    assert preferred_locale("en;q=0.4, xx-YY, pl;q=0.8") == "pl"
    assert preferred_locale("*") is None
    assert preferred_locale(None) is None


def _acknowledgement(locale: str | None, time_zone: str) -> str:
    message = acknowledgement_message(
        Acknowledgement(
            ticket_id="4a4b4c4d-0000-4000-8000-000000000001",
            number="SD-000042",
            subject="Drukarka nie drukuje",
            name="Ala Kowalska",
            email="ala@example.org",
            locale=locale,
            priority="P2",
            access_key="k",
            targets={"first_response": DUE},
            time_zone=time_zone,
        ),
        sender="Spoc <desk@spoc.localhost>",
        portal_url="http://127.0.0.1:8000",
    )
    parts = [part.get_payload(decode=True).decode() for part in message.get_payload()]
    return "\n".join(parts)


def test_the_acknowledgement_gives_due_times_in_the_requesters_locale_and_desk_zone() -> None:
    polish = _acknowledgement("pl-PL", "Europe/Warsaw")
    assert "pon., 23 lis 2026, 13:00 (czas środkowoeuropejski standardowy)" in polish
    assert 'datetime="2026-11-23T12:00:00+00:00"' in polish  # machine-readable in the HTML
    persian = _acknowledgement("fa-IR", "Asia/Tehran")
    assert "دوشنبه 23 نوامبر 2026" in persian and "15:30 (وقت عادی ایران)" in persian
    assert "Mon 23 Nov 2026" not in polish + persian


async def _requester_page(
    sqlite_url: str, requester_locale: str | None, accept_language: str
) -> str:
    import httpx

    from spoc_intake.app import create_app
    from spoc_intake.schemas import TicketCreate
    from tests.e2e.journey import NEW_TICKET
    from tests.harness import envelope, service
    from tests.unit.test_notify_acknowledgement import clocks_started

    body = {**NEW_TICKET, "requester": {**NEW_TICKET["requester"], "locale": requester_locale}}
    async with service("intake", sqlite_url, time_zone="Asia/Tehran") as intake:
        created = await intake.container.tickets.create(
            TicketCreate.model_validate(body), idempotency_key=None
        )
        number, key = created.body["number"], created.body["access_key"]
        clocks = clocks_started().model_copy(update={"number": number})
        await intake.deliver(envelope(clocks, ticket_id=created.body["id"], source="sla"))
        app = create_app(intake.container.settings, intake.container, manage_runtime=False)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://intake"
        ) as client:
            page = await client.get(
                f"/t/{number}",
                headers={"X-Access-Key": key, "Accept-Language": accept_language},
            )
    assert page.status_code == 200, page.text
    return page.text


async def test_the_requesters_page_shows_due_times_in_their_locale_on_the_desks_clock(
    sqlite_url: str,
) -> None:
    html = await _requester_page(sqlite_url, "fa-IR", accept_language="en-US")
    # 12:00 UTC is 15:30 in Tehran; the requester asked for Persian, whatever the browser says.
    assert "دوشنبه 23 نوامبر 2026،\u200f 15:30 (وقت عادی ایران)" in html
    assert "Mon 23 Nov 2026" not in html


async def test_without_a_requester_locale_the_page_follows_the_browser(sqlite_url: str) -> None:
    html = await _requester_page(sqlite_url, None, accept_language="pl-PL,pl;q=0.9,en;q=0.5")
    assert "pon., 23 lis 2026, 15:30 (Iran (czas standardowy))" in html
