"""Helpers for tests that talk to the real PostgreSQL and RabbitMQ on this machine."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_notify.models import Delivery
from spoc_platform.db import create_engine
from tests.localstack import create_database, drop_database

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_ADMIN_DSN = os.environ.get(
    "SPOC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_HOST = os.environ.get("SPOC_TEST_AMQP_HOST", "127.0.0.1")
RABBITMQ_API = os.environ.get("SPOC_TEST_RABBITMQ_API", "http://127.0.0.1:15672/api")
RABBITMQ_AUTH = ("guest", "guest")

T = TypeVar("T")


def unavailable(what: str, error: BaseException) -> None:
    """In CI a missing real dependency is a failure; on a laptop without it, a skip."""
    message = (
        f"{what} is not reachable ({type(error).__name__}: {error}); run scripts/local-services"
    )
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition not met",
) -> T:
    """Polls `probe` until it returns something truthy, or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{message} within {timeout}s (last value: {last!r})")


async def mail_owed(notify: AsyncEngine) -> int:
    """Deliveries notify still owes: due, waiting for a retry, or being sent right now (a claimed
    delivery stays pending until its send is recorded). Read from notify's own database."""
    async with notify.connect() as conn:
        pending = select(func.count()).select_from(Delivery).where(Delivery.status == "pending")
        return int((await conn.execute(pending)).scalar_one())


async def until_notify_is_idle(notify: AsyncEngine | str, *, timeout: float = 20.0) -> None:
    """Waits until notify's dispatcher has nothing left to send (see mail_owed), given its engine
    or its database URL. Count mails only after this: a count made as soon as the first mail
    arrives passes even when a second one follows a moment later (a retry, a re-send)."""
    engine = create_engine(notify, pool_size=1) if isinstance(notify, str) else notify
    owed = 0

    async def idle() -> bool:
        nonlocal owed
        owed = await mail_owed(engine)
        return owed == 0

    try:
        await eventually(idle, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"notify still owes {owed} mail(s) after {timeout}s") from None
    finally:
        if engine is not notify:
            await engine.dispose()


class RabbitAdmin:
    """RabbitMQ's management API, for vhosts of our own and looking at queues."""

    def __init__(self, vhost: str) -> None:
        self.vhost = vhost
        self._client = httpx.Client(base_url=RABBITMQ_API, auth=RABBITMQ_AUTH, timeout=10)

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{AMQP_HOST}:5672/{self.vhost}?heartbeat=10&reconnect_interval=1"

    def create(self) -> None:
        self._client.put(f"/vhosts/{self.vhost}").raise_for_status()
        self._client.put(
            f"/permissions/{self.vhost}/guest",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()

    def delete(self) -> None:
        self._client.delete(f"/vhosts/{self.vhost}")
        self._client.close()

    def queue(self, name: str) -> dict[str, object]:
        response = self._client.get(f"/queues/{self.vhost}/{name}")
        response.raise_for_status()
        return dict(response.json())

    def bindings(self, queue: str) -> list[dict[str, object]]:
        response = self._client.get(f"/queues/{self.vhost}/{queue}/bindings")
        response.raise_for_status()
        return list(response.json())


def new_rabbit_vhost() -> RabbitAdmin:
    admin = RabbitAdmin(f"spoc-test-{uuid.uuid4().hex[:12]}")
    try:
        admin.create()
    except httpx.HTTPError as error:
        unavailable("RabbitMQ (management API on :15672)", error)
    return admin


async def create_postgres_database(prefix: str) -> str:
    """A fresh, empty database; returns its SQLAlchemy asyncpg URL."""
    import asyncpg

    try:
        return await create_database(POSTGRES_ADMIN_DSN, prefix)
    except (OSError, asyncpg.PostgresError) as error:
        unavailable("PostgreSQL", error)
        raise  # unavailable() never returns; this keeps type checkers informed


async def drop_postgres_database(url: str) -> None:
    await drop_database(POSTGRES_ADMIN_DSN, url)
