"""The four services as separate processes on this machine, on RabbitMQ and PostgreSQL, plus an
SMTP sink that counts what notify sends. Used by the end-to-end tests and the benchmark."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import httpx

from spoc_platform.sealing import KeyPair, generate_key_pair

SERVICE_NAMES = ("intake", "routing", "sla", "notify")


class MailSink:
    """An SMTP server in a background thread that keeps every message it is given."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Message] = []
        self.received_at: dict[str, float] = {}
        # Called in the SMTP thread with each message, just before the sink answers 250: the
        # fault suite kills notify in the window between that answer and notify's own commit.
        self.on_accept: list[Callable[[Message], None]] = []
        self._lock = threading.Lock()
        sink = self

        class _Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                message = message_from_bytes(envelope.content)
                with sink._lock:
                    sink.messages.append(message)
                    ticket = message.get("X-Spoc-Ticket")
                    if ticket:
                        sink.received_at.setdefault(ticket, time.monotonic())
                for listener in list(sink.on_accept):
                    listener(message)
                return "250 OK"

        self._controller = Controller(_Handler(), hostname=host, port=port or _free_port())

    @property
    def url(self) -> str:
        return f"smtp://{self._controller.hostname}:{self._controller.port}"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def for_ticket(self, number: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.get("X-Spoc-Ticket") == number]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ProcessStack:
    amqp_url: str
    database_urls: Mapping[str, str]
    smtp_url: str
    log_dir: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # A fresh access-key pair per stack, as a deployment has its own (never the development one).
    keys: KeyPair = field(default_factory=generate_key_pair)

    def __post_init__(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in SERVICE_NAMES:
            self.ports.setdefault(name, _free_port())

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def environment(self, service: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPOC_")}
        env.update(
            {
                "SPOC_AMQP_URL": self.amqp_url,
                f"SPOC_{service.upper()}_DATABASE_URL": self.database_urls[service],
                f"SPOC_{service.upper()}_LOG_JSON": "true",
                "SPOC_NOTIFY_SMTP_URL": self.smtp_url,
                "SPOC_NOTIFY_PORTAL_URL": self.url("intake"),
                "SPOC_INTAKE_ACCESS_KEY_RECIPIENT": self.keys.recipient,
                "SPOC_NOTIFY_ACCESS_KEY_SECRET": self.keys.secret,
            }
        )
        env.update(self.extra_env)
        return env

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "spoc.cli", *args]

    def migrate(self) -> None:
        """Migrates the four databases side by side (each is its own process and database)."""
        running = {
            service: subprocess.Popen(
                self._command("migrate", service),
                env=self.environment(service),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for service in SERVICE_NAMES
        }
        for service, process in running.items():
            _, errors = process.communicate(timeout=120)
            if process.returncode != 0:
                raise RuntimeError(f"migrating {service} failed: {errors.decode(errors='replace')}")

    def launch(self, service: str) -> None:
        log = (self.log_dir / f"{service}.log").open("ab")
        self.processes[service] = subprocess.Popen(
            self._command("serve", service, "--port", str(self.ports[service])),
            env=self.environment(service),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(
        self, services: tuple[str, ...] = SERVICE_NAMES, timeout: float = 30
    ) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            for service in services:
                while True:
                    process = self.processes[service]
                    if process.poll() is not None:
                        raise RuntimeError(
                            f"{service} exited with {process.returncode}: {self.log_tail(service)}"
                        )
                    try:
                        if (await client.get(f"{self.url(service)}/readyz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{service} not ready: {self.log_tail(service)}")
                    await asyncio.sleep(0.1)

    async def start(self) -> None:
        for service in SERVICE_NAMES:
            self.launch(service)
        await self.wait_ready()

    def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[service]
        process.send_signal(sig)
        process.wait(timeout=30)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_tail(self, service: str, lines: int = 30) -> str:
        path = self.log_dir / f"{service}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items()}


async def create_database(admin_dsn: str, prefix: str) -> str:
    """A fresh, empty PostgreSQL database; returns its SQLAlchemy asyncpg URL."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_dsn, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


async def drop_database(admin_dsn: str, url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[-1]
    conn = await asyncpg.connect(admin_dsn, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
