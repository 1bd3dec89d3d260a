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
    """A kept-open SMTP session per sender slot, reopened when the server drops it."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"}:
            raise ValueError(f"SMTP URL must start with smtp:// or smtps://, not {url!r}")
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
        self._client: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is None or not self._client.is_connected:
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
            self._client = client
        return self._client

    async def send(self, mail: OutgoingMail) -> None:
        async with self._lock:
            try:
                client = await self._connected()
                await client.sendmail(mail.sender, list(mail.recipients), mail.raw)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                # A server that closed an idle session is not a failed delivery: reopen once.
                self._client = None
                client = await self._connected()
                await client.sendmail(mail.sender, list(mail.recipients), mail.raw)

    async def close(self) -> None:
        if self._client is not None and self._client.is_connected:
            try:
                await self._client.quit()
            except aiosmtplib.SMTPException:
                self._client.close()
        self._client = None
