"""Events on a real RabbitMQ carry their CloudEvents attributes as `cloudEvents:*` headers
(the AMQP binding's names), beside an envelope that is byte for byte what Spoc published; a
dead letter keeps them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from spoc_platform.bus import Delivery, OutgoingMessage, PoisonMessage, QueueSpec
from spoc_platform.bus.amqp import AmqpBus
from tests.harness import envelope, ticket_created
from tests.support import RabbitAdmin, eventually

pytestmark = pytest.mark.broker

ROUTING = QueueSpec("routing", ("ticket.created",), delivery_limit=1)


def cloud_events(headers: Mapping[str, Any]) -> dict[str, Any]:
    # The broker adds its own (a quorum queue's x-delivery-count): only ours are looked at.
    return {k: v for k, v in headers.items() if k.startswith("cloudEvents:")}


@pytest.fixture
async def channel(rabbit: RabbitAdmin) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(rabbit.amqp_url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def test_a_published_event_carries_its_cloudevents_attributes_and_an_unchanged_envelope(
    bus: AmqpBus, channel: AbstractChannel
) -> None:
    await bus.declare(ROUTING)
    event = envelope(ticket_created())
    body = event.to_bytes()

    await bus.publish(OutgoingMessage(str(event.id), event.type, body))

    queue = await channel.get_queue("routing.events")
    received = await eventually(lambda: queue.get(no_ack=True, fail=False), message="the event")
    assert received.body == body
    assert cloud_events(received.headers) == {
        "cloudEvents:specversion": "1.0",
        "cloudEvents:id": str(event.id),
        "cloudEvents:source": event.source,
        "cloudEvents:type": "ticket.created",
        "cloudEvents:time": event.model_dump(mode="json")["occurred_at"],
        "cloudEvents:subject": str(event.ticket_id),
    }
    assert received.content_type == "application/json"


async def test_a_body_that_is_no_envelope_goes_out_without_attributes(
    bus: AmqpBus, channel: AbstractChannel
) -> None:
    await bus.declare(ROUTING)
    await bus.publish(OutgoingMessage("m-raw", "ticket.created", b"not an envelope"))
    queue = await channel.get_queue("routing.events")
    received = await eventually(lambda: queue.get(no_ack=True, fail=False), message="the message")
    assert received.body == b"not an envelope"
    assert cloud_events(received.headers) == {}


async def test_a_dead_letter_keeps_the_cloudevents_attributes(
    bus: AmqpBus, channel: AbstractChannel
) -> None:
    async def refuse(_: Delivery) -> None:
        raise PoisonMessage("not for us")

    subscription = await bus.consume(ROUTING, refuse)
    event = envelope(ticket_created())
    try:
        await bus.publish(OutgoingMessage(str(event.id), event.type, event.to_bytes()))
        dead = await channel.get_queue("routing.dead")
        letter = await eventually(lambda: dead.get(no_ack=True, fail=False), message="dead letter")
    finally:
        await subscription.cancel()
    assert letter.body == event.to_bytes()
    assert letter.headers["cloudEvents:id"] == str(event.id)
    assert letter.headers["cloudEvents:type"] == "ticket.created"
    assert letter.headers["x-spoc-error"]
