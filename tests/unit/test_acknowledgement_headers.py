"""The acknowledgement's headers to an address the desk has never heard from carry no words of
whoever opened the ticket: anyone may open one for any address (D19)."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_string
from email.header import decode_header, make_header

import pytest

from spoc_notify.compose import Acknowledgement, acknowledgement_message

PHISHING_SUBJECT = "Your account is locked: confirm your password at evil.example"
PHISHING_NAME = "IT Security Team"


def sent(*, opener_text_in_headers: bool, locale: str | None = None) -> dict[str, str]:
    message = acknowledgement_message(
        Acknowledgement(
            ticket_id="4a4b4c4d-0000-4000-8000-000000000001",
            number="SD-000042",
            subject=PHISHING_SUBJECT,
            name=PHISHING_NAME,
            email="ala@example.org",
            locale=locale,
            priority="P2",
            access_key="k",
            targets={"first_response": datetime(2026, 1, 5, 9, 0, tzinfo=UTC)},
            opener_text_in_headers=opener_text_in_headers,
        ),
        sender="Spoc <desk@spoc.localhost>",
        portal_url="http://127.0.0.1:8000",
    )
    parsed = message_from_string(message.as_string())
    return {name: str(make_header(decode_header(value))) for name, value in parsed.items()}


@pytest.mark.parametrize("locale", [None, "pl-PL", "fa-IR"])
def test_to_a_stranger_the_headers_hold_the_number_and_the_address_only(
    locale: str | None,
) -> None:
    headers = sent(opener_text_in_headers=False, locale=locale)

    assert headers["Subject"] == "[SD-000042] We have your request"
    assert headers["To"] == "ala@example.org"
    every_header = "\n".join(headers.values())
    assert PHISHING_NAME not in every_header and "evil.example" not in every_header


def test_where_allowed_the_headers_carry_the_subject_and_the_name() -> None:
    headers = sent(opener_text_in_headers=True)

    assert headers["Subject"] == f"[SD-000042] We have your request: {PHISHING_SUBJECT}"
    assert headers["To"] == f"{PHISHING_NAME} <ala@example.org>"


@pytest.mark.parametrize("opener_text_in_headers", [False, True])
def test_an_address_that_cannot_be_written_is_refused_with_or_without_the_name(
    opener_text_in_headers: bool,
) -> None:
    """Refused while composing, where the handler records it as unwritable, not by the mail
    server after every retry."""
    with pytest.raises(UnicodeError):
        acknowledgement_message(
            Acknowledgement(
                ticket_id="4a4b4c4d-0000-4000-8000-000000000002",
                number="SD-000043",
                subject="Printer",
                name="José",
                email="josé@example.org",
                locale=None,
                priority="P2",
                access_key="k",
                targets={},
                opener_text_in_headers=opener_text_in_headers,
            ),
            sender="Spoc <desk@spoc.localhost>",
            portal_url="http://127.0.0.1:8000",
        ).as_string()
