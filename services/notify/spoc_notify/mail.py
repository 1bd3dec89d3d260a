"""Mail transports: SMTP for real deployments, a Maildir a person or a test can read."""

from __future__ import annotations

import asyncio
import mailbox
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypedDict
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
from pydantic import SecretStr


@dataclass(frozen=True)
class OutgoingMail:
    """A finished RFC 5322 message and its SMTP envelope: sent as is, never parsed again."""

    raw: bytes
    sender: str
    recipients: tuple[str, ...]


class MailTransport(Protocol):
    async def send(self, mail: OutgoingMail) -> None: ...

    async def close(self) -> None: ...


class SmtpOptions(TypedDict):
    hostname: str
    port: int
    use_tls: bool
    # None: STARTTLS whenever the server offers it; True: required; False: never.
    start_tls: bool | None
    username: str | None
    password: str | None
    timeout: float


class InsecureSmtpAuth(aiosmtplib.SMTPException):
    """Credentials would cross the network in clear text: the session is not encrypted."""


class UntrustedSmtpCertificate(aiosmtplib.SMTPException):
    """The relay's TLS certificate is not one the system, or SPOC_NOTIFY_SMTP_CA_FILE, trusts."""


def _certificate_failure(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate check behind `error`: raised as is (STARTTLS) or wrapped (smtps://)."""
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        current = current.__cause__
    return None


_STARTTLS_CHOICES = {"": None, "auto": None, "true": True, "required": True, "false": False}


def smtp_options(
    url: str, *, timeout: float = 10.0, allow_insecure_auth: bool = False
) -> SmtpOptions:
    """What an SMTP URL asks for, refused if it cannot work or would send a password in clear.

    smtp://host:587 encrypts with STARTTLS whenever the server offers it (?starttls=required:
    or fail; ?starttls=false: never, for a local catcher); smtps://host:465 is TLS from the
    first byte. A login is only ever sent over TLS, unless `allow_insecure_auth` says a
    catcher on a trusted network may have it."""
    parts = urlsplit(url)
    if parts.scheme not in {"smtp", "smtps"}:
        # The scheme alone: the rest of the URL may hold the relay's password.
        raise ValueError(f"SMTP URL must start with smtp:// or smtps://, not {parts.scheme}://")
    choice = parse_qs(parts.query).get("starttls", [""])[0].lower()
    if choice not in _STARTTLS_CHOICES:
        raise ValueError(f"SMTP URL: starttls must be auto, required or false, not {choice!r}")
    implicit_tls = parts.scheme == "smtps"
    start_tls = False if implicit_tls else _STARTTLS_CHOICES[choice]
    username = unquote(parts.username) if parts.username else None
    if username and start_tls is False and not implicit_tls and not allow_insecure_auth:
        raise ValueError(
            "SMTP URL: a login with starttls=false would send the password in clear text; "
            "use STARTTLS or smtps://, or allow it for a local catcher "
            "(SPOC_NOTIFY_SMTP_ALLOW_INSECURE_AUTH)"
        )
    return {
        "hostname": parts.hostname or "127.0.0.1",
        "port": parts.port or (465 if implicit_tls else 25),
        "use_tls": implicit_tls,
        "start_tls": start_tls,
        "username": username,
        "password": unquote(parts.password) if parts.password else None,
        "timeout": timeout,
    }


class MaildirTransport:
    """One RFC 5322 file per message under <dir>/new, as any mail reader expects."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._box = mailbox.Maildir(path, create=True)

    async def send(self, mail: OutgoingMail) -> None:
        await asyncio.to_thread(self._box.add, mail.raw)

    async def close(self) -> None:
        return None


class SmtpTransport:
    """Up to `concurrency` SMTP sessions sending at once, each kept open between messages and
    reopened when the server drops it. A slow server is then waited on in parallel, as the
    dispatcher's declared concurrency promises, not one message at a time."""

    def __init__(
        self,
        url: str | SecretStr,
        *,
        timeout: float = 10.0,
        concurrency: int = 1,
        allow_insecure_auth: bool = False,
        ca_file: Path | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"SMTP concurrency must be at least 1, not {concurrency}")
        if isinstance(url, SecretStr):  # as the settings hold it: the URL may carry a password
            url = url.get_secret_value()
        self._options = smtp_options(url, timeout=timeout, allow_insecure_auth=allow_insecure_auth)
        self._allow_insecure_auth = allow_insecure_auth
        # A private CA's certificates, for a relay whose certificate the system does not trust.
        self._ca_file = str(ca_file) if ca_file else None
        self.concurrency = concurrency
        # Sessions not sending right now; at most `concurrency` exist, one per slot.
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(concurrency)

    async def _connect(self) -> aiosmtplib.SMTP:
        options = self._options
        # The login is ours to do, after checking the session is encrypted: given the
        # credentials, aiosmtplib would log in right after connecting whatever the server offered.
        client = aiosmtplib.SMTP(
            hostname=options["hostname"],
            port=options["port"],
            use_tls=options["use_tls"],
            start_tls=options["start_tls"],
            timeout=options["timeout"],
            cert_bundle=self._ca_file,
        )
        try:
            await client.connect()
        except (ssl.SSLError, aiosmtplib.SMTPException) as error:
            failure = _certificate_failure(error)
            if failure is None:
                raise
            raise UntrustedSmtpCertificate(self._untrusted_advice(failure)) from error
        try:
            if options["username"] is not None:
                encrypted = client.get_transport_info("sslcontext") is not None
                if not encrypted and not self._allow_insecure_auth:
                    raise InsecureSmtpAuth(
                        f"{options['hostname']}:{options['port']} offers no STARTTLS: the login "
                        "is not sent in clear text (use smtps://, or allow it for a local "
                        "catcher with SPOC_NOTIFY_SMTP_ALLOW_INSECURE_AUTH)"
                    )
                await client.login(options["username"], options["password"] or "")
        except BaseException:
            client.close()
            raise
        return client

    def _untrusted_advice(self, failure: ssl.SSLCertVerificationError) -> str:
        options = self._options
        where = f"{options['hostname']}:{options['port']}"
        advice = f"{where}: its TLS certificate is not trusted ({failure.verify_message}): "
        advice += "give its CA certificate (PEM) in SPOC_NOTIFY_SMTP_CA_FILE"
        if not options["use_tls"]:
            # STARTTLS is only ever tried when offered; a relay on a trusted network whose
            # certificate cannot be trusted may instead be told never to use it.
            advice += ", or, for a relay on a trusted network without a login, add ?starttls=false"
        return advice

    async def send(self, mail: OutgoingMail) -> None:
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            try:
                client = await self._send_on(client, mail)
            except BaseException:
                # Mid-conversation failures (or a cancelled send) leave the session in an
                # unknown state: never hand it to the next message.
                if client is not None:
                    client.close()
                raise
            self._idle.append(client)

    async def _send_on(self, client: aiosmtplib.SMTP | None, mail: OutgoingMail) -> aiosmtplib.SMTP:
        if client is not None and client.is_connected:
            try:
                await client.sendmail(mail.sender, list(mail.recipients), mail.raw)
                return client
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                # A server that closed an idle session is not a failed delivery: reopen once.
                client.close()
        client = await self._connect()
        try:
            await client.sendmail(mail.sender, list(mail.recipients), mail.raw)
        except BaseException:
            client.close()
            raise
        return client

    async def close(self) -> None:
        """Ends the idle sessions; call it once sends have drained (the dispatcher does)."""
        idle, self._idle = self._idle, []
        for client in idle:
            if not client.is_connected:
                continue
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, ConnectionError):
                client.close()
