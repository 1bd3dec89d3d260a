"""What AmqpBus's consumer does with each verdict on a real RabbitMQ: the dead letter it writes,
what happens when that cannot be confirmed, pausing, and what the bus tells its listeners."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from spoc_platform.bus import (
    DEAD_EXCHANGE,
    DeadLetter,
    Delivery,
    OutgoingMessage,
    PoisonMessage,
    PublishError,
    QueueSpec,
    RetryLater,
)
from spoc_platform.bus.amqp import AmqpBus
from tests.support import RABBITMQ_API, RABBITMQ_AUTH, RabbitAdmin, eventually
from tests.tcp_proxy import CuttingProxy

pytestmark = pytest.mark.broker

SPEC = QueueSpec("desk", ("ticket.*", "#.late"), delivery_limit=5, max_retry_delay=0.05)
AMQP_LOG = "spoc_platform.bus.amqp"


@pytest.fixture
async def peek(rabbit: RabbitAdmin) -> AsyncIterator[AbstractChannel]:
    """A plain channel of the test's own: it looks at queues without being the bus."""
    connection = await aio_pika.connect(rabbit.amqp_url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def depth(channel: AbstractChannel, queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of a queue, exact (a passive declare, not the stats)."""
    declared = await channel.declare_queue(queue, passive=True)
    result = declared.declaration_result
    return int(result.message_count or 0), int(result.consumer_count or 0)


async def take_all(channel: AbstractChannel, queue: str) -> list[AbstractIncomingMessage]:
    found = []
    source = await channel.get_queue(queue, ensure=False)
    while (message := await source.get(fail=False, no_ack=True)) is not None:
        found.append(message)
    return found


class Verdicts:
    """A handler that records each delivery and answers with the verdict planned for it."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.plan: dict[str, list[Exception]] = {}

    async def handler(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        planned = self.plan.get(delivery.message_id or "")
        if planned:
            raise planned.pop(0)

    def seen(self, message_id: str) -> list[tuple[str, int]]:
        return [
            (d.routing_key, d.delivery_count) for d in self.deliveries if d.message_id == message_id
        ]

    async def has_seen(self, message_id: str, times: int = 1) -> bool:
        return len(self.seen(message_id)) >= times


async def test_a_poison_message_is_dead_lettered_with_its_properties_error_attempts_and_time(
    bus: AmqpBus, peek: AbstractChannel, caplog: pytest.LogCaptureFixture
) -> None:
    verdicts = Verdicts()
    reason = "ValueError: cannot parse the priority matrix " + "x" * 1500
    verdicts.plan["m-1"] = [
        RetryLater("database busy", delay=0),
        RuntimeError("connection reset"),  # outside the verdicts: the transport's own back-off
        PoisonMessage(reason),
    ]
    subscription = await bus.consume(SPEC, verdicts.handler)
    try:
        await bus.publish(
            OutgoingMessage("m-1", "ticket.updated", b'{"number": "SD-1"}', correlation_id="c-1")
        )
        await eventually(lambda: verdicts.has_seen("m-1", 3), message="three deliveries")

        async def one_dead() -> bool:
            return (await depth(peek, "desk.dead"))[0] == 1

        await eventually(one_dead, message="dead letter")
    finally:
        await subscription.cancel()

    # Each delivery counted: two requeues, then the poison verdict on the third.
    assert verdicts.seen("m-1") == [
        ("ticket.updated", 0),
        ("ticket.updated", 1),
        ("ticket.updated", 2),
    ]
    (dead,) = await take_all(peek, "desk.dead")
    assert (dead.exchange, dead.routing_key) == (DEAD_EXCHANGE, "desk")
    assert dead.body == b'{"number": "SD-1"}'
    assert (dead.message_id, dead.correlation_id) == ("m-1", "c-1")
    assert (dead.content_type, dead.type) == ("application/json", "ticket.updated")
    assert dead.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    headers = dict(dead.headers)
    headers.pop("x-delivery-count", None)  # the dead queue's own, on the way to this test
    dead_at = datetime.fromisoformat(str(headers.pop("x-spoc-dead-at")))
    assert dead_at.utcoffset() == timedelta(0)
    assert datetime.now(UTC) - dead_at < timedelta(minutes=1)
    # The error is cut to 1000 characters: a header, not a log.
    assert headers == {
        "x-spoc-error": reason[:1000],
        "x-spoc-original-routing-key": "ticket.updated",
        "x-spoc-attempts": 3,
    }
    # The original was acknowledged: nothing waits in the service queue.
    assert await depth(peek, "desk.events") == (0, 0)
    # The unexpected error is logged with its traceback; the verdicts are not.
    (logged,) = [r for r in caplog.records if r.name == AMQP_LOG and r.levelno >= logging.WARNING]
    assert (logged.levelname, logged.getMessage()) == (
        "ERROR",
        "handler raised outside the consumer's verdicts",
    )
    assert logged.exc_info is not None and "connection reset" in str(logged.exc_info[1])


async def test_the_bus_lists_replays_and_purges_dead_letters_and_a_second_death_keeps_the_key(
    bus: AmqpBus, peek: AbstractChannel
) -> None:
    verdicts = Verdicts()
    for message_id in ("m-1", "m-2", "m-3"):
        verdicts.plan[message_id] = [PoisonMessage("schema says no")]
    subscription = await bus.consume(SPEC, verdicts.handler)
    try:
        for message_id in ("m-1", "m-2", "m-3"):
            await bus.publish(OutgoingMessage(message_id, "ticket.updated", b"{}"))

        async def dead(count: int) -> list[DeadLetter]:
            letters = await bus.dead_letters("desk")
            return letters if len(letters) == count else []

        listed = await eventually(lambda: dead(3), message="three dead letters")
        assert [(d.message_id, d.routing_key, d.reason, d.attempts) for d in listed] == [
            (m, "ticket.updated", "schema says no", 1) for m in ("m-1", "m-2", "m-3")
        ]
        assert [d.message_id for d in await bus.dead_letters("desk", limit=2)] == ["m-1", "m-2"]

        # Replayed to the service's own queue: it arrives under the queue's name, and dies again.
        verdicts.plan["m-2"] = [PoisonMessage("still no")]
        assert await bus.replay_dead_letters("desk", ["m-2"]) == 1
        await eventually(lambda: verdicts.has_seen("m-2", 2), message="the replay consumed")
        await eventually(lambda: dead(3), message="m-2 dead again")
    finally:
        await subscription.cancel()

    assert verdicts.seen("m-2") == [("ticket.updated", 0), ("desk.events", 0)]
    assert await bus.purge_dead_letters("desk", ["m-1", "m-3", "m-404"]) == 2
    (m2,) = await take_all(peek, "desk.dead")
    assert m2.message_id == "m-2"
    # The second death still names the key it was first published with, not the queue's name.
    assert m2.headers["x-spoc-original-routing-key"] == "ticket.updated"
    assert m2.headers["x-spoc-error"] == "still no"
    assert await bus.replay_dead_letters("desk") == 0
    assert await bus.purge_dead_letters("desk") == 0


async def test_a_dead_letter_the_broker_does_not_confirm_in_time_is_rejected_to_the_broker(
    bus: AmqpBus, rabbit: RabbitAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    """During an alarm RabbitMQ confirms nothing: the consumer must not wait for ever, nor
    acknowledge a message whose dead copy may not exist. It rejects it; the broker dead-letters."""
    impatient = AmqpBus(rabbit.amqp_url, publish_timeout=1e-6)
    await impatient.connect()
    verdicts = Verdicts()
    verdicts.plan["m-1"] = [PoisonMessage("schema says no")]
    with caplog.at_level(logging.WARNING, logger=AMQP_LOG):
        subscription = await impatient.consume(SPEC, verdicts.handler)
        try:
            await bus.publish(OutgoingMessage("m-1", "ticket.updated", b"{}"))

            async def rejected() -> list[DeadLetter]:
                return [d for d in await bus.dead_letters("desk") if d.reason == "rejected"]

            (letter,) = await eventually(rejected, message="the broker's dead letter")
        finally:
            await subscription.cancel()
            await impatient.close()

    assert (letter.message_id, letter.routing_key) == ("m-1", "ticket.updated")
    assert verdicts.seen("m-1") == [("ticket.updated", 0)]
    warnings = [r.getMessage() for r in caplog.records if r.name == AMQP_LOG]
    assert warnings == ["dead letter not confirmed (TimeoutError()); the broker dead-letters it"]


async def test_a_dead_letter_with_no_dead_letter_queue_bound_is_not_acknowledged_as_kept(
    bus: AmqpBus, peek: AbstractChannel, caplog: pytest.LogCaptureFixture
) -> None:
    verdicts = Verdicts()
    verdicts.plan["m-1"] = [PoisonMessage("schema says no")]
    with caplog.at_level(logging.WARNING, logger=AMQP_LOG):
        subscription = await bus.consume(SPEC, verdicts.handler)
        try:
            # An operator's mistake: the dead-letter queue no longer takes the service's letters.
            dead_queue = await peek.get_queue("desk.dead", ensure=False)
            await dead_queue.unbind(DEAD_EXCHANGE, routing_key="desk")
            await bus.publish(OutgoingMessage("m-1", "ticket.updated", b"{}"))

            async def warned() -> list[str]:
                return [r.getMessage() for r in caplog.records if r.name == AMQP_LOG]

            (warning,) = await eventually(warned, message="a warning")
        finally:
            await subscription.cancel()
    # The broker returned it (nothing bound): the consumer says so, and does not ack it.
    assert warning.startswith("dead letter not confirmed (")
    assert "NO_ROUTE" in warning and warning.endswith("); the broker dead-letters it")
    assert verdicts.seen("m-1") == [("ticket.updated", 0)]


async def test_a_paused_subscription_takes_nothing_until_it_is_resumed(
    bus: AmqpBus, peek: AbstractChannel
) -> None:
    verdicts = Verdicts()
    subscription = await bus.consume(SPEC, verdicts.handler)
    try:
        await subscription.pause()
        await subscription.pause()  # pausing twice is harmless
        await bus.publish(OutgoingMessage("m-1", "ticket.updated", b"{}"))
        # Proving "nothing taken" needs a moment in which it could have been.
        await asyncio.sleep(0.3)
        assert verdicts.deliveries == []
        assert await depth(peek, "desk.events") == (1, 0)

        await subscription.resume()
        await subscription.resume()  # resuming twice consumes once
        await eventually(lambda: verdicts.has_seen("m-1"), message="consumed after resume")
        assert await depth(peek, "desk.events") == (0, 1)
    finally:
        await subscription.cancel()
    assert await depth(peek, "desk.events") == (0, 0)


async def _connection_names(api: httpx.AsyncClient, vhost: str) -> list[str]:
    response = await api.get(f"/vhosts/{vhost}/connections")
    response.raise_for_status()
    return sorted(c["client_properties"].get("connection_name", "") for c in response.json())


async def test_the_bus_names_its_connections_and_tells_listeners_and_the_log_how_it_is(
    rabbit: RabbitAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    states: list[bool] = []
    late: list[bool] = []
    bus = AmqpBus(rabbit.amqp_url, publish_timeout=5, on_connection_change=states.append)
    bus.add_connection_listener(late.append)  # told at once: not connected yet
    assert (bus.is_healthy(), late) == (False, [False])

    with caplog.at_level(logging.INFO, logger=AMQP_LOG):
        await bus.connect()
        assert (bus.is_healthy(), states, late) == (True, [True], [False, True])
        async with httpx.AsyncClient(base_url=RABBITMQ_API, auth=RABBITMQ_AUTH) as api:

            async def named() -> list[str]:
                names = await _connection_names(api, rabbit.vhost)
                return names if len(names) == 2 else []

            # Operators tell the two apart in the management UI (an alarm blocks publishers).
            assert await eventually(named, timeout=20) == ["spoc consume", "spoc publish"]
            await bus.close()

            async def gone() -> bool:
                return await _connection_names(api, rabbit.vhost) == []

            await eventually(gone, timeout=20, message="both connections closed")

    assert (bus.is_healthy(), states) == (False, [True, False])
    # Closing on purpose is not a lost connection: no warning.
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == AMQP_LOG] == [
        ("INFO", "RabbitMQ connected")
    ]
    with pytest.raises(PublishError, match=r"^not connected to RabbitMQ$"):
        await bus.publish(OutgoingMessage("m-1", "ticket.updated", b"{}"))


async def test_a_lost_connection_is_a_warning_and_the_reconnect_is_logged(
    rabbit: RabbitAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = CuttingProxy(5672)
    proxy.start()
    states: list[bool] = []
    flapping = AmqpBus(
        f"amqp://guest:guest@127.0.0.1:{proxy.port}/{rabbit.vhost}?reconnect_interval=0.2",
        on_connection_change=states.append,
    )
    try:
        with caplog.at_level(logging.INFO, logger=AMQP_LOG):
            await flapping.connect()
            proxy.cut()

            async def back() -> bool:
                return len(states) > 2 and states[-1] and flapping.is_healthy()

            await eventually(back, message="reconnected")
    finally:
        await flapping.close()
        proxy.stop()

    assert states[:2] == [True, False]
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == AMQP_LOG]
    assert logged[:3] == [
        ("INFO", "RabbitMQ connected"),
        ("WARNING", "RabbitMQ connection lost; reconnecting"),
        ("INFO", "RabbitMQ connected"),
    ]


async def test_a_bus_used_before_connect_says_so(rabbit: RabbitAdmin) -> None:
    bus = AmqpBus(rabbit.amqp_url)
    with pytest.raises(RuntimeError, match=r"^AmqpBus\.connect\(\) was not called$"):
        await bus.declare(SPEC)
    with pytest.raises(PublishError, match=r"^not connected to RabbitMQ$"):
        await bus.publish(OutgoingMessage("m-1", "ticket.updated", b"{}"))


async def test_a_publish_error_names_the_routing_key_and_why(
    bus: AmqpBus, rabbit: RabbitAdmin
) -> None:
    await bus.declare(SPEC)
    with pytest.raises(PublishError, match=r"^billing\.paid not confirmed: ") as raised:
        await bus.publish(OutgoingMessage("m-1", "billing.paid", b"{}"))
    assert raised.value.unroutable

    impatient = AmqpBus(rabbit.amqp_url, publish_timeout=1e-6)
    await impatient.connect()
    try:
        with pytest.raises(PublishError) as raised:
            await impatient.publish(OutgoingMessage("m-2", "ticket.updated", b"{}"))
    finally:
        await impatient.close()
    assert str(raised.value) == "ticket.updated not confirmed: TimeoutError()"
    assert not raised.value.unroutable


async def test_an_empty_routing_key_stays_empty_through_delivery_and_death(
    bus: AmqpBus, peek: AbstractChannel
) -> None:
    spec = QueueSpec("desk", ("#",), delivery_limit=5)
    verdicts = Verdicts()
    verdicts.plan["m-1"] = [PoisonMessage("no type")]
    subscription = await bus.consume(spec, verdicts.handler)
    try:
        await bus.publish(OutgoingMessage("m-1", "", b'{"type": "ticket.updated"}'))

        async def dead() -> bool:
            return (await depth(peek, "desk.dead"))[0] == 1

        await eventually(dead, message="dead letter")
    finally:
        await subscription.cancel()

    assert verdicts.seen("m-1") == [("", 0)]
    (letter,) = await bus.dead_letters("desk")
    # Nothing says the key: the envelope's own type does.
    assert letter.routing_key == "ticket.updated"
    (message,) = await take_all(peek, "desk.dead")
    assert message.headers["x-spoc-original-routing-key"] == ""


@pytest.fixture
async def flapping(rabbit: RabbitAdmin) -> AsyncIterator[tuple[AmqpBus, CuttingProxy, list[bool]]]:
    """A bus whose connections go through a proxy the test can cut, and what it reported."""
    proxy = CuttingProxy(5672)
    proxy.start()
    states: list[bool] = []
    bus = AmqpBus(
        f"amqp://guest:guest@127.0.0.1:{proxy.port}/{rabbit.vhost}?reconnect_interval=0.2",
        publish_timeout=5,
        on_connection_change=states.append,
    )
    await bus.connect()
    try:
        yield bus, proxy, states
    finally:
        await bus.close()
        proxy.stop()


async def _lost(states: list[bool]) -> bool:
    return False in states


async def test_pausing_while_the_connection_is_down_holds_after_the_reconnect(
    bus: AmqpBus, flapping: tuple[AmqpBus, CuttingProxy, list[bool]], peek: AbstractChannel
) -> None:
    cut_bus, proxy, states = flapping
    verdicts = Verdicts()
    subscription = await cut_bus.consume(SPEC, verdicts.handler)
    try:
        proxy.cut()
        await eventually(lambda: _lost(states), message="the cut noticed")
        await subscription.pause()  # must not raise: the runtime pauses during outages

        async def back() -> bool:
            return states[-1] and cut_bus.is_healthy()

        await eventually(back, timeout=20, message="reconnected")
        await bus.publish(OutgoingMessage("m-1", "ticket.updated", b"{}"))
        await asyncio.sleep(0.3)
        assert verdicts.deliveries == []
        assert await depth(peek, "desk.events") == (1, 0)

        await subscription.resume()
        await eventually(lambda: verdicts.has_seen("m-1"), message="consumed after resume")
    finally:
        await subscription.cancel()
