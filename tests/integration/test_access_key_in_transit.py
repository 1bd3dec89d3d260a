"""The four real bootstraps on one MemoryBus: what travels between them never holds a
requester's access key in plaintext, and neither does a dead letter; the mail link still works."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest

from spoc.services import SERVICES, ServiceName
from spoc_intake.schemas import TicketCreate
from spoc_notify.mail import OutgoingMail
from spoc_platform.bus import DeadLetter, Delivery, PoisonMessage, QueueSpec
from spoc_platform.bus.memory import MemoryBus
from spoc_platform.migrations import upgrade
from spoc_platform.sealing import generate_key_pair
from tests.e2e.journey import NEW_TICKET
from tests.support import eventually

pytestmark = pytest.mark.integration


class KeptMail:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    async def send(self, mail: OutgoingMail) -> None:
        parsed = message_from_bytes(mail.raw, policy=default)
        assert isinstance(parsed, EmailMessage)
        self.sent.append(parsed)

    async def close(self) -> None:
        return None


@dataclass
class Desk:
    bus: MemoryBus
    containers: dict[ServiceName, Any]
    mail: KeptMail
    # Every message on the bus, as a consumer bound to everything receives it.
    seen: list[Delivery]


@contextlib.asynccontextmanager
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    bus, mail, seen = MemoryBus(), KeptMail(), []
    await bus.connect()
    keys = generate_key_pair()
    own = {
        ServiceName.intake: {"access_key_recipient": keys.recipient},
        ServiceName.notify: {"access_key_secret": keys.secret},
    }
    containers: dict[ServiceName, Any] = {}
    for name, entry in SERVICES.items():
        url = f"sqlite+aiosqlite:///{tmp_path / f'{name.value}.sqlite3'}"
        upgrade(entry.migrations, url)
        settings = entry.settings(database_url=url, bus="memory", **own.get(name, {}))
        extra = {"transport": mail} if name is ServiceName.notify else {}
        containers[name] = entry.bootstrap(settings, bus=bus, **extra)

    async def look(delivery: Delivery) -> None:
        seen.append(delivery)
        if delivery.routing_key == "ticket.created":
            raise PoisonMessage("kept as a dead letter, to look at")

    await bus.consume(QueueSpec("onlooker", ("#",), delivery_limit=1), look)
    for container in containers.values():
        await container.runtime.declare()
    for container in containers.values():
        await container.runtime.start()
    try:
        yield Desk(bus, containers, mail, seen)
    finally:
        for container in reversed(list(containers.values())):
            await container.runtime.stop()
        await bus.close()


async def test_no_message_on_the_bus_and_no_dead_letter_holds_the_access_key(
    tmp_path: Path,
) -> None:
    async with desk(tmp_path) as running:
        intake = running.containers[ServiceName.intake]
        created = await intake.tickets.create(
            TicketCreate.model_validate(NEW_TICKET), idempotency_key=None
        )
        key, number = created.body["access_key"], created.body["number"]

        async def acknowledged() -> list[EmailMessage]:
            return running.mail.sent

        [mail] = await eventually(acknowledged, message="no acknowledgement sent")
        assert f"/t/{number}?key={key}" in mail.get_body(("plain",)).get_content()

        async def dead() -> list[DeadLetter]:
            return await running.bus.dead_letters("onlooker")

        [letter] = await eventually(dead, message="ticket.created not dead-lettered")
        assert key.encode() not in letter.body
        types = {d.routing_key for d in running.seen}
        assert {"ticket.created", "ticket.routed", "sla.clock_started"} <= types
        assert all(key.encode() not in d.body for d in running.seen)
