"""Mail transports: SMTP for real deployments, a Maildir a person or a test can read."""

from __future__ import annotations

import asyncio
import mailbox
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib


class MailTransport(Protocol):
    async def send(self, message: EmailMessage) -> None: ...

    async def close(self) -> None: ...


class MaildirTransport:
    """One RFC 5322 file per message under <dir>/new, as any mail reader expects."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._box = mailbox.Maildir(path, create=True)

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._box.add, message)

    async def close(self) -> None:
        return None


class SmtpTransport:
    """A kept-open SMTP session per sender slot, reopened when the server drops it."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"}:
            raise ValueError(f"SMTP URL must start with smtp:// or smtps://, not {url!r}")
        query = parse_qs(parts.query)
        self._options = {
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

    async def send(self, message: EmailMessage) -> None:
        async with self._lock:
            try:
                await (await self._connected()).send_message(message)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                # A server that closed an idle session is not a failed delivery: reopen once.
                self._client = None
                await (await self._connected()).send_message(message)

    async def close(self) -> None:
        if self._client is not None and self._client.is_connected:
            try:
                await self._client.quit()
            except aiosmtplib.SMTPException:
                self._client.close()
        self._client = None
