"""A handler interrupted while its channel is still open (the process shutting down cancels it):
the message goes back to the queue for the next consumer, it is not dead-lettered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from spoc_platform.bus import Delivery, OutgoingMessage, QueueSpec
from spoc_platform.bus.amqp import AmqpBus
from tests.support import RabbitAdmin, eventually

pytestmark = pytest.mark.broker

SPEC = QueueSpec("desk", ("ticket.*",), delivery_limit=5)


@pytest.fixture
async def peek(rabbit: RabbitAdmin) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(rabbit.amqp_url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def test_a_handler_cancelled_on_an_open_channel_hands_its_message_back(
    bus: AmqpBus, peek: AbstractChannel
) -> None:
    running: list[asyncio.Task[object]] = []
    seen: list[Delivery] = []

    async def stuck_once(delivery: Delivery) -> None:
        seen.append(delivery)
        if len(seen) == 1:
            task = asyncio.current_task()
            assert task is not None
            running.append(task)
            await asyncio.Event().wait()  # until cancelled

    subscription = await bus.consume(SPEC, stuck_once)
    try:
        await bus.publish(OutgoingMessage("m-1", "ticket.updated", b"{}"))

        async def started() -> bool:
            return bool(running)

        await eventually(started, message="the handler running")
        running[0].cancel()  # as a shutdown does, with the channel still open

        async def again() -> bool:
            return len(seen) == 2

        await eventually(again, message="the message handed out again")
    finally:
        await subscription.cancel()

    assert [(d.message_id, d.delivery_count) for d in seen] == [("m-1", 0), ("m-1", 1)]
    dead = await peek.declare_queue("desk.dead", passive=True)
    assert dead.declaration_result.message_count == 0
