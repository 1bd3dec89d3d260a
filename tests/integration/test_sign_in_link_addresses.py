"""notify writes a sign-in link's To as it writes an acknowledgement's: an address it cannot
write (non-ASCII, which would need SMTPUTF8) is refused and recorded as a failed delivery, never
sent on as an RFC 2047 encoded word that no mail server delivers to."""

from __future__ import annotations

import uuid
from datetime import timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import select

from spoc_contracts import Envelope, RequesterSignInRequested
from spoc_notify.compose import SignInLink, sign_in_message
from spoc_notify.mail import OutgoingMail
from spoc_notify.models import Delivery
from spoc_platform.db import utc_now
from spoc_platform.sealing import DEVELOPMENT_RECIPIENT, seal_for
from tests.harness import ServiceUnderTest, envelope, service

pytestmark = pytest.mark.integration


class RecordingTransport:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    async def send(self, mail: OutgoingMail) -> None:
        parsed = message_from_bytes(mail.raw, policy=default)
        assert isinstance(parsed, EmailMessage)
        self.sent.append(parsed)

    async def close(self) -> None:
        return None


def link_requested(email: str) -> Envelope:
    event = RequesterSignInRequested(
        email=email,
        locale="es-ES",
        link_token_sealed=seal_for(DEVELOPMENT_RECIPIENT, "the-token"),
        expires_at=utc_now() + timedelta(minutes=30),
    )
    return envelope(event, source="intake").model_copy(update={"ticket_id": None})


async def deliveries_for(
    notify: ServiceUnderTest, request_id: uuid.UUID
) -> list[dict[str, object]]:
    table = Delivery.__table__
    async with notify.runtime.engine.connect() as conn:
        rows = (await conn.execute(select(table).where(table.c.ticket_id == request_id))).all()
    return [dict(row._mapping) for row in rows]


def test_a_link_message_refuses_an_address_it_cannot_write() -> None:
    link = SignInLink(
        request_id="r1",
        email="josé@example.org",
        locale=None,
        token="the-token",
        expires_at=utc_now() + timedelta(minutes=30),
    )
    with pytest.raises(UnicodeError):
        sign_in_message(link, sender="desk@example.org", portal_url="https://desk.example.org")


async def test_a_link_to_a_non_ascii_address_is_recorded_failed_and_never_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    transport = RecordingTransport()
    url = f"sqlite+aiosqlite:///{tmp_path / 'notify.sqlite3'}"
    async with service("notify", url, transport=transport) as notify:
        odd = link_requested("josé@example.org")
        with caplog.at_level("ERROR", logger="spoc_notify.handlers"):
            # Handled (a dead letter would raise PoisonMessage here), and redelivered: still
            # one record, one log line.
            await notify.deliver(odd)
            await notify.deliver(odd)
        assert await notify.container.dispatcher.dispatch_once() == 0

        [failed] = await deliveries_for(notify, odd.id)
        assert failed["status"] == "failed" and failed["kind"] == "sign_in_link"
        assert failed["recipient"] == "josé@example.org" and failed["message"] == ""
        assert str(failed["last_error"]).startswith("cannot compose: 'ascii' codec")
        assert transport.sent == []
        # About no ticket: nothing for intake to put on a timeline.
        assert await notify.published() == []
        errors = [r for r in caplog.records if "sign-in link cannot be sent" in r.getMessage()]
        assert len(errors) == 1 and "josé" not in errors[0].getMessage()

        # An address it can write still gets its link.
        plain = link_requested("jose@example.org")
        await notify.deliver(plain)
        assert await notify.container.dispatcher.dispatch_once() == 1
        [mail] = transport.sent
        assert mail["To"] == "jose@example.org"
