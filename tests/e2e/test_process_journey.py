"""The first journey through four separate processes on the real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aio_pika
import asyncpg
import httpx
import pytest
import pytest_asyncio

from tests.e2e.journey import (
    acknowledged_view,
    agent_works_the_ticket,
    assert_acknowledgement,
    assert_requester_view,
    open_ticket,
    operator_creates_agent,
)
from tests.localstack import SERVICE_NAMES, MailSink, ProcessStack
from tests.support import (
    RabbitAdmin,
    create_postgres_database,
    drop_postgres_database,
    eventually,
    new_rabbit_vhost,
    until_notify_is_idle,
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
    await until_notify_is_idle(stack.database_urls["notify"])
    mail = mail_sink.for_ticket(created["number"])
    assert len(mail) == 1
    assert_acknowledgement(mail[0], created, stack.url("intake"))


async def test_an_agent_works_the_ticket_and_the_requester_confirms_and_rates_it(
    stack: ProcessStack, intake: httpx.AsyncClient
) -> None:
    # On intake's database, with intake's own settings, as an operator beside it would.
    await asyncio.to_thread(operator_creates_agent, [], stack.environment("intake"))
    created = await open_ticket(intake)
    await acknowledged_view(intake, created)

    await agent_works_the_ticket(intake, created)


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

    await until_notify_is_idle(stack.database_urls["notify"])
    assert len(mail_sink.for_ticket(created["number"])) == 1
    view = await acknowledged_view(intake, created)
    assert len(view["timeline"]) == 4
    intake_duplicates = await _consumed(stack, "intake", "duplicate")
    assert intake_duplicates.get("ticket.routed", 0) >= 1


async def test_a_service_killed_mid_handler_gets_the_event_again_from_the_broker(
    stack: ProcessStack, intake: httpx.AsyncClient, mail_sink: MailSink, rabbit: RabbitAdmin
) -> None:
    """routing is killed -9 while its handler waits inside its transaction (the test holds a
    lock the handler needs): nothing is committed or acknowledged, so RabbitMQ puts ticket.created
    back in routing's queue and the restarted routing routes the ticket. One mail in the end."""
    routing_db = await asyncpg.connect(_dsn(stack.database_urls["routing"]))
    try:
        lock = routing_db.transaction()
        await lock.start()
        await routing_db.execute("LOCK TABLE triage IN ACCESS EXCLUSIVE MODE")

        created = await open_ticket(intake)

        async def handler_waits_on_the_lock() -> bool:
            return bool(
                await routing_db.fetchval(
                    "SELECT count(*) FROM pg_locks JOIN pg_database d ON d.oid = database"
                    " WHERE datname = current_database()"
                    " AND relation = 'triage'::regclass AND NOT granted"
                )
            )

        await eventually(handler_waits_on_the_lock, message="routing's handler is not blocked")
        await asyncio.to_thread(stack.kill, "routing")

        async def back_in_the_queue() -> bool:
            return await _queue_state(rabbit, "routing.events") == (1, 0)

        # Delivered and never acknowledged: the broker has it back, ready for a new consumer.
        await eventually(back_in_the_queue, message="ticket.created not back in routing's queue")
        await lock.rollback()
    finally:
        await routing_db.close()
        if stack.processes["routing"].poll() is not None:
            stack.launch("routing")  # also when the test failed: the module's stack is shared
    await stack.wait_ready(("routing",))

    view = await acknowledged_view(intake, created)

    assert_requester_view(view, created)
    # The restarted routing handled the redelivered event, once, and acknowledged it.
    # (Ticket events only: routing also hears intake's credential heartbeats and staff changes.)
    consumed = await _consumed(stack, "routing", "ok")
    assert {kind: n for kind, n in consumed.items() if kind.startswith("ticket.") and n} == {
        "ticket.created": 1
    }

    async def acknowledged_to_the_broker() -> bool:
        return await _queue_state(rabbit, "routing.events") == (0, 1)

    await eventually(acknowledged_to_the_broker, message="routing's queue not drained")
    await until_notify_is_idle(stack.database_urls["notify"])
    assert len(mail_sink.for_ticket(created["number"])) == 1


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _queue_state(rabbit: RabbitAdmin, queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of a queue, as RabbitMQ counts them right now."""
    connection = await aio_pika.connect(rabbit.amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        ok = declared.declaration_result
        return ok.message_count or 0, ok.consumer_count or 0


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
