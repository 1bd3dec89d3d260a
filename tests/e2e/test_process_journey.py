"""The first journey through four separate processes on the real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aio_pika
import httpx
import pytest
import pytest_asyncio

from spoc.localstack import SERVICE_NAMES, MailSink, ProcessStack
from tests.e2e.journey import (
    acknowledged_view,
    assert_acknowledgement,
    assert_requester_view,
    open_ticket,
)
from tests.support import (
    RabbitAdmin,
    create_postgres_database,
    drop_postgres_database,
    eventually,
    new_rabbit_vhost,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.broker,
    pytest.mark.postgres,
    pytest.mark.asyncio(loop_scope="module"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mail_sink() -> AsyncIterator[MailSink]:
    sink = MailSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture(scope="module")
def rabbit() -> Iterator[RabbitAdmin]:
    """One vhost for the module: starting four processes per test would double the run."""
    admin = new_rabbit_vhost()
    try:
        yield admin
    finally:
        admin.delete()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    rabbit: RabbitAdmin, mail_sink: MailSink, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ProcessStack]:
    databases = {name: await create_postgres_database(f"spoc_e2e_{name}") for name in SERVICE_NAMES}
    processes = ProcessStack(
        amqp_url=rabbit.amqp_url,
        database_urls=databases,
        smtp_url=mail_sink.url,
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    try:
        await asyncio.to_thread(processes.migrate)
        await processes.start()
        yield processes
    finally:
        processes.stop()
        for url in databases.values():
            await drop_postgres_database(url)


@pytest_asyncio.fixture(loop_scope="module")
async def intake(stack: ProcessStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url("intake"), timeout=10) as client:
        yield client


async def test_a_ticket_travels_through_four_processes_and_is_acknowledged_once(
    stack: ProcessStack, intake: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    created = await open_ticket(intake)

    view = await acknowledged_view(intake, created)

    assert_requester_view(view, created)
    mail = mail_sink.for_ticket(created["number"])
    assert len(mail) == 1
    assert_acknowledgement(mail[0], created, stack.url("intake"))


async def test_every_event_delivered_twice_still_sends_one_acknowledgement(
    stack: ProcessStack, intake: httpx.AsyncClient, mail_sink: MailSink, rabbit: RabbitAdmin
) -> None:
    connection = await aio_pika.connect_robust(rabbit.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("spoc.events")
        # A spy sees every event of the journey, so the test can send each one again.
        spy = await channel.declare_queue(exclusive=True)
        await spy.bind(exchange, routing_key="#")

        created = await open_ticket(intake)
        await acknowledged_view(intake, created)
        seen = await _drain(spy)
        assert {m.routing_key for m in seen} == {
            "ticket.created",
            "ticket.routed",
            "sla.clock_started",
            "notification.sent",
        }

        for message in seen:
            await exchange.publish(
                aio_pika.Message(
                    message.body,
                    message_id=message.message_id,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=message.routing_key or "",
            )

        async def duplicates_consumed() -> bool:
            counts = await _consumed(stack, "notify", "duplicate")
            return counts.get("ticket.created", 0) >= 1 and counts.get("sla.clock_started", 0) >= 1

        await eventually(duplicates_consumed, timeout=20, message="duplicates not consumed")

    assert len(mail_sink.for_ticket(created["number"])) == 1
    view = await acknowledged_view(intake, created)
    assert len(view["timeline"]) == 4
    intake_duplicates = await _consumed(stack, "intake", "duplicate")
    assert intake_duplicates.get("ticket.routed", 0) >= 1


async def _drain(queue: aio_pika.abc.AbstractQueue) -> list[aio_pika.abc.AbstractIncomingMessage]:
    messages = []
    while (message := await queue.get(fail=False, timeout=5)) is not None:
        await message.ack()
        messages.append(message)
    return messages


async def _consumed(stack: ProcessStack, service: str, outcome: str) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{stack.url(service)}/metrics")).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("spoc_events_consumed_total{") and f'outcome="{outcome}"' in line:
            labels, value = line.rsplit(" ", 1)
            event_type = labels.split('type="', 1)[1].split('"', 1)[0]
            counts[event_type] = float(value)
    return counts
