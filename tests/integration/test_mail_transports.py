"""Notify's mail transports against a real SMTP server and a real Maildir."""

from __future__ import annotations

import mailbox
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from pydantic import ValidationError

from spoc_notify.bootstrap import mail_transport
from spoc_notify.mail import (
    InsecureSmtpAuth,
    MaildirTransport,
    OutgoingMail,
    SmtpTransport,
    UntrustedSmtpCertificate,
    smtp_options,
)
from spoc_notify.settings import NotifySettings
from tests.localstack import MailSink, _free_port

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
    transport = SmtpTransport(f"smtp://127.0.0.1:{_free_port()}", timeout=2)
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await transport.send(MAIL)


def test_smtp_urls_are_understood_or_refused() -> None:
    with pytest.raises(ValueError, match="smtp://"):
        SmtpTransport("http://mail.example.org")
    secure = smtp_options("smtp://user:p%40ss@mail.example.org:587?starttls=true")
    assert secure["start_tls"] and secure["password"] == "p@ss"
    # STARTTLS whenever offered is the default; smtps:// is TLS from the first byte.
    assert smtp_options("smtp://mail.example.org:587")["start_tls"] is None
    implicit = smtp_options("smtps://mail.example.org")
    assert implicit["use_tls"] and implicit["port"] == 465 and implicit["start_tls"] is False
    with pytest.raises(ValueError, match="starttls must be"):
        SmtpTransport("smtp://mail.example.org?starttls=maybe")
    # A login that could only ever go out in clear text is refused before anything is sent.
    cleartext_login = "smtp://user:pass@mail.example.org:25?starttls=false"
    with pytest.raises(ValueError, match="clear text"):
        SmtpTransport(cleartext_login)
    with pytest.raises(ValidationError, match=r"SPOC_NOTIFY_SMTP_URL: .*clear text"):
        NotifySettings(database_url="sqlite+aiosqlite:///x", smtp_url=cleartext_login)
    SmtpTransport(cleartext_login, allow_insecure_auth=True)
    NotifySettings(
        database_url="sqlite+aiosqlite:///x",
        smtp_url=cleartext_login,
        smtp_allow_insecure_auth=True,
    )


# ---- TLS and logins against a real SMTP server (aiosmtpd) ----


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (certificate, key), PEM."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@dataclass
class Relay:
    """What a relay saw: each login with whether the session was encrypted, each message."""

    url: str
    logins: list[tuple[str, bool]] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)


@pytest.fixture
def relay_factory(certificate: tuple[Path, Path]) -> Iterator[Any]:
    started: list[Controller] = []

    def start(*, starttls: bool = False, implicit_tls: bool = False) -> Relay:
        port = _free_port()
        relay = Relay(f"{'smtps' if implicit_tls else 'smtp'}://alice:s3cret-pass@127.0.0.1:{port}")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*certificate)

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, auth: Any
        ) -> Any:
            encrypted = server.transport.get_extra_info("ssl_object") is not None
            relay.logins.append((auth.login.decode(), encrypted))
            return AuthResult(success=auth.password == b"s3cret-pass")

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                relay.messages.append(envelope.original_content)
                return "250 OK"

        controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=port,
            authenticator=authenticator,
            # The server takes a login over plain text when asked: the client must refuse.
            auth_require_tls=False,
            tls_context=context if starttls else None,
            ssl_context=context if implicit_tls else None,
        )
        controller.start()
        started.append(controller)
        return relay

    yield start
    for controller in started:
        controller.stop()


async def test_smtp_on_587_logs_in_only_after_starttls(
    relay_factory: Any, certificate: tuple[Path, Path]
) -> None:
    relay = relay_factory(starttls=True)
    transport = SmtpTransport(relay.url, ca_file=certificate[0])
    await transport.send(MAIL)
    await transport.close()

    assert relay.logins == [("alice", True)], "the login crossed the network unencrypted"
    assert len(relay.messages) == 1


async def test_smtps_is_encrypted_from_the_first_byte(
    relay_factory: Any, certificate: tuple[Path, Path]
) -> None:
    relay = relay_factory(implicit_tls=True)
    transport = SmtpTransport(relay.url, ca_file=certificate[0])
    await transport.send(MAIL)
    await transport.close()

    assert relay.logins == [("alice", True)] and len(relay.messages) == 1


async def test_a_relay_without_tls_never_receives_the_password(relay_factory: Any) -> None:
    relay = relay_factory(starttls=False)
    transport = SmtpTransport(relay.url)
    with pytest.raises(InsecureSmtpAuth, match="offers no STARTTLS"):
        await transport.send(MAIL)
    assert relay.logins == [] and relay.messages == []


async def test_a_login_in_clear_text_goes_out_only_where_explicitly_allowed(
    relay_factory: Any,
) -> None:
    relay = relay_factory(starttls=False)
    transport = SmtpTransport(relay.url, allow_insecure_auth=True)
    await transport.send(MAIL)
    await transport.close()
    assert relay.logins == [("alice", False)] and len(relay.messages) == 1


async def test_an_untrusted_certificate_stops_the_send_before_the_login_and_says_what_to_do(
    relay_factory: Any,
) -> None:
    relay = relay_factory(starttls=True)
    transport = SmtpTransport(relay.url)  # the self-signed certificate is not trusted
    with pytest.raises(UntrustedSmtpCertificate) as refused:
        await transport.send(MAIL)
    assert relay.logins == [] and relay.messages == []
    advice = str(refused.value)
    assert "not trusted" in advice and "SPOC_NOTIFY_SMTP_CA_FILE" in advice
    assert "?starttls=false" in advice
    assert isinstance(refused.value.__cause__, ssl.SSLCertVerificationError)


async def test_an_untrusted_certificate_on_smtps_names_the_ca_file_only(
    relay_factory: Any,
) -> None:
    relay = relay_factory(implicit_tls=True)
    with pytest.raises(UntrustedSmtpCertificate, match="SPOC_NOTIFY_SMTP_CA_FILE") as refused:
        await SmtpTransport(relay.url).send(MAIL)
    # TLS from the first byte cannot be turned off by ?starttls=false: not offered as a way out.
    assert "starttls" not in str(refused.value)
    assert relay.logins == [] and relay.messages == []


async def test_required_starttls_sends_nothing_to_a_relay_without_it(relay_factory: Any) -> None:
    relay = relay_factory(starttls=False)
    transport = SmtpTransport(f"{relay.url}?starttls=required", allow_insecure_auth=True)
    with pytest.raises(aiosmtplib.SMTPException, match="STARTTLS"):
        await transport.send(MAIL)
    assert relay.logins == [] and relay.messages == []


async def test_the_relay_password_stays_out_of_the_settings_shown_yet_reaches_the_relay(
    relay_factory: Any, certificate: tuple[Path, Path]
) -> None:
    relay = relay_factory(starttls=True)
    settings = NotifySettings(
        database_url="sqlite+aiosqlite:///x", smtp_url=relay.url, smtp_ca_file=certificate[0]
    )
    for shown in (repr(settings), str(settings.model_dump()), settings.model_dump_json()):
        assert "s3cret-pass" not in shown
    transport = mail_transport(settings)
    await transport.send(MAIL)
    await transport.close()
    assert relay.logins == [("alice", True)] and len(relay.messages) == 1


def test_a_refused_smtp_url_does_not_echo_its_password() -> None:
    with pytest.raises(ValidationError) as refused:
        NotifySettings(
            database_url="sqlite+aiosqlite:///x", smtp_url="http://user:s3cret-pass@mail.example"
        )
    assert "s3cret-pass" not in str(refused.value)


async def test_maildir_keeps_one_rfc5322_file_per_message(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path / "mail")
    await transport.send(MAIL)
    box = mailbox.Maildir(tmp_path / "mail", create=False)
    [key] = box.keys()
    assert box.get_bytes(key) == RAW
