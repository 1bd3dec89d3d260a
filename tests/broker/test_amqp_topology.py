"""What AmqpBus builds and sends on a real RabbitMQ, read back through the management API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractChannel, AbstractQueue

from spoc_platform.bus import (
    DEAD_EXCHANGE,
    EVENTS_EXCHANGE,
    Delivery,
    OutgoingMessage,
    PublishError,
    QueueSpec,
)
from spoc_platform.bus.amqp import AmqpBus
from tests.support import RABBITMQ_API, RABBITMQ_AUTH, RabbitAdmin, eventually
from tests.unit.test_topic_matching import TOPIC_CASES

pytestmark = pytest.mark.broker

SPEC = QueueSpec("desk", ("ticket.*", "sla.#"), delivery_limit=4, prefetch=8)


@pytest.fixture
async def peek(rabbit: RabbitAdmin) -> AsyncIterator[AbstractChannel]:
    """A plain channel of the test's own, for basic_get: it looks without being the bus."""
    connection = await aio_pika.connect(rabbit.amqp_url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=RABBITMQ_API, auth=RABBITMQ_AUTH, timeout=10) as client:
        yield client


async def _ignore(delivery: Delivery) -> None:
    return None


@pytest.mark.parametrize("how", ["declare", "consume"])
async def test_the_service_queue_is_a_durable_quorum_queue_that_dead_letters(
    bus: AmqpBus,
    rabbit: RabbitAdmin,
    api: httpx.AsyncClient,
    how: str,
) -> None:
    if how == "declare":
        await bus.declare(SPEC)
    else:
        subscription = await bus.consume(SPEC, _ignore)

    queue = rabbit.queue("desk.events")
    assert queue["durable"] is True
    assert queue["type"] == "quorum"
    arguments = queue["arguments"]
    assert isinstance(arguments, dict)
    assert arguments["x-queue-type"] == "quorum"
    # Limits that may change are policies (test_broker_policies.py), never queue arguments.
    assert "x-delivery-limit" not in arguments
    assert arguments["x-dead-letter-exchange"] == DEAD_EXCHANGE == "spoc.dead"
    assert arguments["x-dead-letter-routing-key"] == "desk"
    assert arguments["x-dead-letter-strategy"] == "at-least-once"
    # at-least-once dead-lettering is only honoured with reject-publish overflow.
    assert arguments["x-overflow"] == "reject-publish"

    dead = rabbit.queue("desk.dead")
    assert dead["durable"] is True
    assert dead["type"] == "quorum"
    assert [
        (b["source"], b["routing_key"])
        for b in rabbit.bindings("desk.dead")
        if b["source"] == DEAD_EXCHANGE
    ] == [("spoc.dead", "desk")]

    event_bindings = {
        b["routing_key"] for b in rabbit.bindings("desk.events") if b["source"] == EVENTS_EXCHANGE
    }
    assert event_bindings == set(SPEC.bindings)

    for name, kind in ((EVENTS_EXCHANGE, "topic"), (DEAD_EXCHANGE, "direct")):
        response = await api.get(f"/exchanges/{rabbit.vhost}/{name}")
        response.raise_for_status()
        exchange = response.json()
        assert (exchange["type"], exchange["durable"]) == (kind, True), name

    if how == "consume":
        await subscription.cancel()


async def test_declare_again_adds_no_duplicate_bindings(bus: AmqpBus, rabbit: RabbitAdmin) -> None:
    await bus.declare(SPEC)
    await bus.declare(SPEC)
    routing_keys = [
        str(b["routing_key"])
        for b in rabbit.bindings("desk.events")
        if b["source"] == EVENTS_EXCHANGE
    ]
    assert sorted(routing_keys) == sorted(SPEC.bindings)


async def test_messages_are_persistent_json_with_their_ids(
    bus: AmqpBus,
    peek: AbstractChannel,
) -> None:
    await bus.declare(SPEC)
    await bus.publish(OutgoingMessage("m-1", "ticket.created", b'{"n": 1}', correlation_id="c-1"))

    queue = await peek.get_queue("desk.events", ensure=False)
    got = await queue.get(fail=False, no_ack=True)
    assert got is not None
    assert got.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert int(got.delivery_mode) == 2
    assert got.content_type == "application/json"
    assert got.message_id == "m-1"
    assert got.correlation_id == "c-1"
    assert got.type == "ticket.created"
    assert (got.exchange, got.routing_key, got.body) == (
        EVENTS_EXCHANGE,
        "ticket.created",
        b'{"n": 1}',
    )


async def test_publish_returns_only_once_the_broker_has_the_message(
    bus: AmqpBus,
    peek: AbstractChannel,
) -> None:
    await bus.declare(SPEC)
    queue = await peek.get_queue("desk.events", ensure=False)
    # A confirm on a quorum queue means the message is committed, so a basic_get on another
    # connection straight after publish returns must find it; a fire-and-forget publish
    # would lose this race now and then.
    for n in range(25):
        await bus.publish(OutgoingMessage(f"m-{n}", "sla.breach", b"{}"))
        got = await queue.get(fail=False, no_ack=True)
        assert got is not None and got.message_id == f"m-{n}", n


async def _connection_names(api: httpx.AsyncClient, vhost: str) -> set[str]:
    response = await api.get(f"/vhosts/{vhost}/connections")
    response.raise_for_status()
    return {c["name"] for c in response.json()}


async def test_publisher_and_consumer_come_back_after_the_connection_is_killed(
    bus: AmqpBus,
    rabbit: RabbitAdmin,
    api: httpx.AsyncClient,
) -> None:
    received: list[str | None] = []

    async def record(delivery: Delivery) -> None:
        received.append(delivery.message_id)

    subscription = await bus.consume(SPEC, record)
    await bus.publish(OutgoingMessage("m-before", "ticket.created", b"{}"))
    await eventually(lambda: _has(received, "m-before"))

    # The management API lists a connection once its first stats arrive (a few seconds).
    # Only the bus is connected to this vhost in this test: one connection publishes, one
    # consumes (an alarm blocks publishers; acknowledgements must not share their fate).
    async def both_listed() -> set[str]:
        names = await _connection_names(api, rabbit.vhost)
        return names if len(names) == 2 else set()

    killed_names = await eventually(both_listed, timeout=20, message="connections listed")
    for killed in killed_names:
        response = await api.delete(f"/connections/{killed}", headers={"X-Reason": "test kills it"})
        assert response.status_code == 204

    async def publish_after() -> bool:
        try:
            await bus.publish(OutgoingMessage("m-after", "ticket.created", b"{}"))
        except PublishError:
            return False  # still reconnecting: the outbox would try again, so do we
        return True

    await eventually(publish_after, timeout=20, interval=0.2, message="publish after reconnect")
    await eventually(lambda: _has(received, "m-after"), timeout=20, message="consumer resumed")

    async def replaced() -> bool:
        now = await _connection_names(api, rabbit.vhost)
        return len(now) == 2 and not now & killed_names

    await eventually(replaced, timeout=20, interval=0.2, message="a new connection")
    assert bus.is_healthy()
    await subscription.cancel()


async def _has(received: list[str | None], message_id: str) -> bool:
    return message_id in received


async def test_a_publish_that_cannot_be_confirmed_in_time_raises(
    bus: AmqpBus,
    rabbit: RabbitAdmin,
) -> None:
    await bus.declare(SPEC)
    # No broker confirms within a microsecond: a round trip alone takes longer.
    impatient = AmqpBus(rabbit.amqp_url, publish_timeout=1e-6)
    await impatient.connect()
    try:
        for n in range(5):
            started = time.monotonic()
            with pytest.raises(PublishError) as raised:
                await asyncio.wait_for(
                    impatient.publish(OutgoingMessage(f"m-{n}", "ticket.created", b"{}")), 5
                )
            assert isinstance(raised.value.__cause__, TimeoutError)
            assert not raised.value.unroutable
            assert time.monotonic() - started < 1
    finally:
        await impatient.close()
    # A patient bus on the same broker is not affected.
    await bus.publish(OutgoingMessage("m-ok", "ticket.created", b"{}"))


async def test_a_publish_the_broker_refuses_raises(
    bus: AmqpBus,
    rabbit: RabbitAdmin,
    api: httpx.AsyncClient,
) -> None:
    await bus.declare(SPEC)
    # A full queue with reject-publish overflow makes the broker nack instead of confirm.
    response = await api.put(
        f"/policies/{rabbit.vhost}/desk-full",
        json={"pattern": r"^desk\.events$", "definition": {"max-length": 0}, "apply-to": "queues"},
    )
    response.raise_for_status()
    errors: list[PublishError] = []

    async def refused() -> bool:
        try:
            await bus.publish(OutgoingMessage("m-x", "ticket.created", b"{}"))
        except PublishError as error:
            errors.append(error)
            return True
        return False  # the policy is applied asynchronously

    await eventually(refused, timeout=10, interval=0.1, message="a nack")
    assert not errors[0].unroutable


async def test_topic_table_agrees_with_rabbitmq(rabbit: RabbitAdmin, peek: AbstractChannel) -> None:
    """The unit suite's table is checked against topic_matches; here against the broker."""
    exchange = await peek.declare_exchange("topic-table", aio_pika.ExchangeType.TOPIC)
    bindings = sorted({binding for binding, _, _ in TOPIC_CASES})
    keys = sorted({key for _, key, _ in TOPIC_CASES})
    queues: dict[str, AbstractQueue] = {}
    for n, binding in enumerate(bindings):
        queues[binding] = await peek.declare_queue(f"table-{n}", exclusive=True)
        await queues[binding].bind(exchange, routing_key=binding)
    for key in keys:
        # The channel confirms publishes, so each is routed before the next line runs.
        await exchange.publish(aio_pika.Message(key.encode()), routing_key=key, mandatory=False)

    routed: dict[str, set[str]] = {}
    for binding, queue in queues.items():
        routed[binding] = set()
        while (got := await queue.get(fail=False, no_ack=True)) is not None:
            routed[binding].add(got.body.decode())
    disagreements = [
        (binding, key, expected)
        for binding, key, expected in TOPIC_CASES
        if (key in routed[binding]) is not expected
    ]
    assert disagreements == []
