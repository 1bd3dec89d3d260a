"""Mail transports: SMTP for real deployments, a Maildir a person or a test can read."""

from __future__ import annotations

import asyncio
import mailbox
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypedDict
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib


@dataclass(frozen=True)
class OutgoingMail:
    """A finished RFC 5322 message and its SMTP envelope: sent as is, never parsed again."""

    raw: bytes
    sender: str
    recipients: tuple[str, ...]


class MailTransport(Protocol):
    async def send(self, mail: OutgoingMail) -> None: ...

    async def close(self) -> None: ...


class _SmtpOptions(TypedDict):
    hostname: str
    port: int
    use_tls: bool
    start_tls: bool
    username: str | None
    password: str | None
    timeout: float


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

    def __init__(self, url: str, *, timeout: float = 10.0, concurrency: int = 1) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"}:
            raise ValueError(f"SMTP URL must start with smtp:// or smtps://, not {url!r}")
        if concurrency < 1:
            raise ValueError(f"SMTP concurrency must be at least 1, not {concurrency}")
        query = parse_qs(parts.query)
        self._options: _SmtpOptions = {
            "hostname": parts.hostname or "127.0.0.1",
            "port": parts.port or (465 if parts.scheme == "smtps" else 25),
            "use_tls": parts.scheme == "smtps",
            "start_tls": query.get("starttls", ["false"])[0].lower() == "true",
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "timeout": timeout,
        }
        self.concurrency = concurrency
        # Sessions not sending right now; at most `concurrency` exist, one per slot.
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(concurrency)

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self._options["hostname"],
            port=self._options["port"],
            use_tls=self._options["use_tls"],
            start_tls=self._options["start_tls"],
            username=self._options["username"],
            password=self._options["password"],
            timeout=self._options["timeout"],
        )
        await client.connect()
        return client

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
