"""Notify's mail transports against a real SMTP server and a real Maildir."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import pytest

from spoc.localstack import MailSink
from spoc_notify.mail import MaildirTransport, OutgoingMail, SmtpTransport

pytestmark = pytest.mark.integration

RAW = (
    "From: Spoc <desk@spoc.localhost>\r\nTo: Reza <reza@example.org>\r\n"
    "Subject: =?utf-8?b?2K/Ysdiu2YjYp9iz2Ko=?=\r\nX-Spoc-Ticket: SD-000009\r\n"
    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    "درخواست شما ثبت شد: SD-000009\r\n"
).encode()
MAIL = OutgoingMail(raw=RAW, sender="desk@spoc.localhost", recipients=("reza@example.org",))


@pytest.fixture
def sink() -> Iterator[MailSink]:
    server = MailSink()
    server.start()
    yield server
    server.stop()


async def test_smtp_delivers_the_message_as_written_and_keeps_the_session(sink: MailSink) -> None:
    transport = SmtpTransport(sink.url)
    await transport.send(MAIL)
    await transport.send(MAIL)
    await transport.close()

    received = sink.for_ticket("SD-000009")
    assert len(received) == 2
    body = received[0].get_payload(decode=True).decode("utf-8")
    assert "SD-000009" in body and "درخواست" in body


async def test_smtp_reopens_a_session_the_server_dropped(sink: MailSink) -> None:
    transport = SmtpTransport(sink.url)
    await transport.send(MAIL)
    [session] = transport._idle
    session.close()  # as an idle timeout on the server would
    await transport.send(MAIL)
    await transport.close()
    assert len(sink.for_ticket("SD-000009")) == 2


async def test_an_unreachable_smtp_server_is_an_error_not_a_silent_drop() -> None:
    from spoc.localstack import _free_port

    transport = SmtpTransport(f"smtp://127.0.0.1:{_free_port()}", timeout=2)
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await transport.send(MAIL)


def test_smtp_urls_are_understood_or_refused() -> None:
    with pytest.raises(ValueError, match="smtp://"):
        SmtpTransport("http://mail.example.org")
    secure = SmtpTransport("smtp://user:p%40ss@mail.example.org:587?starttls=true")
    assert secure._options["start_tls"] and secure._options["password"] == "p@ss"


async def test_maildir_keeps_one_rfc5322_file_per_message(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path / "mail")
    await transport.send(MAIL)
    box = mailbox.Maildir(tmp_path / "mail", create=False)
    [key] = box.keys()
    assert box.get_bytes(key) == RAW
