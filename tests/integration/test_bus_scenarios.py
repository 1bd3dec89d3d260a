"""One set of bus scenarios run on both transports, so the memory bus keeps RabbitMQ's semantics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from spoc_platform.bus import (
    DeadLetter,
    Delivery,
    MessageBus,
    MessageHandler,
    OutgoingMessage,
    PoisonMessage,
    PublishError,
    QueueSpec,
    RetryLater,
    Subscription,
)
from spoc_platform.bus.amqp import AmqpBus
from spoc_platform.bus.memory import MemoryBus
from tests.support import RabbitAdmin, eventually

pytestmark = pytest.mark.integration

DESK = QueueSpec("desk", ("ticket.*",), delivery_limit=5, max_retry_delay=0.05)


@dataclass
class BusUnderTest:
    """A connected bus plus what a test needs around it, the same on both transports."""

    transport: str
    bus: MessageBus
    read_dead_letters: Callable[[str], Awaitable[list[DeadLetter]]]
    subscriptions: list[Subscription] = field(default_factory=list)

    async def consume(self, spec: QueueSpec, handler: MessageHandler) -> Subscription:
        subscription = await self.bus.consume(spec, handler)
        if isinstance(self.bus, AmqpBus):
            # The broker's backstop delivery limit is a policy, put by the topology step.
            await self.bus.apply_policies([spec])
        self.subscriptions.append(subscription)
        return subscription

    async def cancel(self, subscription: Subscription) -> None:
        self.subscriptions.remove(subscription)
        await subscription.cancel()

    async def dead_letters(self, service: str) -> list[DeadLetter]:
        """Everything dead-lettered for `service` so far."""
        return await self.read_dead_letters(service)

    async def stop(self) -> None:
        while self.subscriptions:
            await self.subscriptions.pop().cancel()
        await self.bus.close()


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.broker)])
async def bus_under_test(request: pytest.FixtureRequest) -> AsyncIterator[BusUnderTest]:
    """The same scenario on the in-process bus and on RabbitMQ (a vhost of the test's own)."""
    if request.param == "memory":
        memory = MemoryBus()

        await memory.connect()
        harness = BusUnderTest("memory", memory, memory.dead_letters)
        try:
            yield harness
        finally:
            await harness.stop()
        return

    rabbit: RabbitAdmin = request.getfixturevalue("rabbit")
    amqp = AmqpBus(rabbit.amqp_url, publish_timeout=5)
    await amqp.connect()
    # Dead letters are read through the port, as an operator's `spoc dead-letters` does.
    harness = BusUnderTest("amqp", amqp, amqp.dead_letters)
    try:
        yield harness
    finally:
        await harness.stop()


class Inbox:
    """Records deliveries; its handler can be told to fail for chosen message ids."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.handled: list[str] = []
        self.fail: dict[str, Callable[[Delivery], Exception | None]] = {}

    async def handler(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        decide = self.fail.get(delivery.message_id or "")
        error = decide(delivery) if decide else None
        if error is not None:
            raise error
        self.handled.append(str(delivery.message_id))

    def ids(self) -> list[str]:
        return [str(d.message_id) for d in self.deliveries]

    def counts(self, message_id: str) -> list[int]:
        return [d.delivery_count for d in self.deliveries if d.message_id == message_id]

    async def has_handled(self, message_id: str) -> bool:
        return message_id in self.handled


def message(message_id: str, routing_key: str = "ticket.created") -> OutgoingMessage:
    return OutgoingMessage(message_id, routing_key, f'{{"id": "{message_id}"}}'.encode())


async def test_topic_routing_delivers_exactly_the_matching_messages(
    bus_under_test: BusUnderTest,
) -> None:
    desk, sla = Inbox(), Inbox()
    await bus_under_test.consume(QueueSpec("desk", ("ticket.*",)), desk.handler)
    await bus_under_test.consume(QueueSpec("sla", ("ticket.created", "sla.#")), sla.handler)
    sent = [
        OutgoingMessage(
            "m-created",
            "ticket.created",
            '{"title": "Drucker im 3. OG \u00fcberhitzt", "raw": "\\u0000"}'.encode(),
            correlation_id="corr-1",
        ),
        OutgoingMessage("m-closed", "ticket.closed", b"{}"),
        OutgoingMessage("m-warning", "sla.breach.warning", b'{"minutes": 15}'),
        OutgoingMessage("m-sla", "sla", b"[]"),
        # Last, and routed to both: once both have it, the queues hold nothing earlier.
        OutgoingMessage("m-end", "ticket.created", b'{"end": true}'),
    ]
    for outgoing in sent:
        await bus_under_test.bus.publish(outgoing)

    await eventually(lambda: desk.has_handled("m-end"), message="desk got the last message")
    await eventually(lambda: sla.has_handled("m-end"), message="sla got the last message")

    assert sorted(desk.ids()) == ["m-closed", "m-created", "m-end"]
    assert sorted(sla.ids()) == ["m-created", "m-end", "m-sla", "m-warning"]
    by_id = {m.message_id: m for m in sent}
    for delivery in desk.deliveries + sla.deliveries:
        original = by_id[delivery.message_id or ""]
        assert delivery.body == original.body
        assert delivery.routing_key == original.routing_key
        assert delivery.delivery_count == 0


async def test_a_handled_message_is_acked_and_not_delivered_again(
    bus_under_test: BusUnderTest,
) -> None:
    first = Inbox()
    subscription = await bus_under_test.consume(DESK, first.handler)
    await bus_under_test.bus.publish(message("m-1"))
    await eventually(lambda: first.has_handled("m-1"))

    # Stopping the consumer hands any unacknowledged message back to the queue, so a fresh
    # consumer would get m-1 again (and before m-2) had it not been acked.
    await bus_under_test.cancel(subscription)
    second = Inbox()
    await bus_under_test.consume(DESK, second.handler)
    await bus_under_test.bus.publish(message("m-2"))
    await eventually(lambda: second.has_handled("m-2"))

    assert first.ids() == ["m-1"]
    assert second.ids() == ["m-2"]
    assert await bus_under_test.dead_letters("desk") == []


async def test_a_transient_failure_is_retried_until_it_succeeds(
    bus_under_test: BusUnderTest,
) -> None:
    inbox = Inbox()
    inbox.fail["m-flaky"] = lambda d: (
        RuntimeError("database briefly unavailable") if d.delivery_count < 2 else None
    )
    await bus_under_test.consume(DESK, inbox.handler)
    await bus_under_test.bus.publish(message("m-flaky"))
    await eventually(lambda: inbox.has_handled("m-flaky"))
    await bus_under_test.bus.publish(message("m-after"))
    await eventually(lambda: inbox.has_handled("m-after"))

    assert inbox.counts("m-flaky") == [0, 1, 2]
    assert inbox.handled == ["m-flaky", "m-after"]
    assert await bus_under_test.dead_letters("desk") == []


async def test_a_message_given_back_for_later_comes_again_only_after_its_delay(
    bus_under_test: BusUnderTest,
) -> None:
    """The consumer's RetryLater carries its own pause (a database outage's back-off): the
    transport waits that long, not its own short retry pause, before the next delivery."""
    inbox = Inbox()
    arrived: list[float] = []
    loop = asyncio.get_running_loop()

    def later_once(delivery: Delivery) -> Exception | None:
        arrived.append(loop.time())
        return RetryLater("held for later", delay=0.6) if delivery.delivery_count == 0 else None

    inbox.fail["m-later"] = later_once
    await bus_under_test.consume(DESK, inbox.handler)
    await bus_under_test.bus.publish(message("m-later"))
    await eventually(lambda: inbox.has_handled("m-later"))

    assert inbox.counts("m-later") == [0, 1]
    assert arrived[1] - arrived[0] >= 0.55


async def test_a_message_that_keeps_failing_is_dead_lettered_after_the_delivery_limit(
    bus_under_test: BusUnderTest,
) -> None:
    # The transport's backstop, under the consumer's own count (tests/integration/
    # test_consumer_verdicts.py): measured on RabbitMQ 3.10, with x-delivery-limit N a quorum
    # queue hands a message out N + 1 times (delivery counts 0..N) and dead-letters it on the
    # next return. The memory bus does the same.
    spec = QueueSpec("desk", ("ticket.*",), delivery_limit=1, max_retry_delay=0.05)
    inbox = Inbox()
    inbox.fail["m-doomed"] = lambda d: RuntimeError("always broken")
    await bus_under_test.consume(spec, inbox.handler)
    await bus_under_test.bus.publish(message("m-doomed"))

    dead = await eventually(lambda: bus_under_test.dead_letters("desk"), message="dead letter")
    await bus_under_test.bus.publish(message("m-after"))
    await eventually(lambda: inbox.has_handled("m-after"), message="the queue moved on")

    assert inbox.counts("m-doomed") == list(range(spec.backstop_limit + 1))
    assert [(d.message_id, d.routing_key, d.body) for d in dead] == [
        ("m-doomed", "ticket.created", b'{"id": "m-doomed"}')
    ]
    assert "delivery" in dead[0].reason
    assert await bus_under_test.dead_letters("desk") == dead


async def test_a_poison_message_is_dead_lettered_at_once(bus_under_test: BusUnderTest) -> None:
    inbox = Inbox()
    inbox.fail["m-poison"] = lambda d: PoisonMessage("schema says no")
    await bus_under_test.consume(DESK, inbox.handler)
    await bus_under_test.bus.publish(message("m-poison", "ticket.updated"))

    dead = await eventually(lambda: bus_under_test.dead_letters("desk"), message="dead letter")
    await bus_under_test.bus.publish(message("m-after"))
    await eventually(lambda: inbox.has_handled("m-after"), message="the queue moved on")

    assert inbox.counts("m-poison") == [0]
    assert [(d.message_id, d.routing_key) for d in dead] == [("m-poison", "ticket.updated")]
    assert "schema says no" in dead[0].reason


async def test_publishing_what_no_queue_is_bound_to_is_unroutable(
    bus_under_test: BusUnderTest,
) -> None:
    inbox = Inbox()
    await bus_under_test.consume(DESK, inbox.handler)

    for routing_key in ("billing.invoice.paid", "ticket", "ticket.created.late"):
        with pytest.raises(PublishError) as raised:
            await bus_under_test.bus.publish(message("m-lost", routing_key))
        assert raised.value.unroutable, routing_key

    # A returned message does not spoil the bus for the next, routable one.
    await bus_under_test.bus.publish(message("m-routed"))
    await eventually(lambda: inbox.has_handled("m-routed"))
    assert inbox.ids() == ["m-routed"]


async def test_declare_is_idempotent_and_messages_wait_for_a_consumer(
    bus_under_test: BusUnderTest,
) -> None:
    await bus_under_test.bus.declare(DESK)
    await bus_under_test.bus.declare(DESK)
    for n in range(3):
        await bus_under_test.bus.publish(message(f"m-{n}"))

    inbox = Inbox()
    await bus_under_test.consume(DESK, inbox.handler)  # declares a third time
    await eventually(lambda: inbox.has_handled("m-2"))
    assert inbox.ids() == ["m-0", "m-1", "m-2"]


async def test_prefetch_bounds_how_many_handlers_run_at_once(
    bus_under_test: BusUnderTest,
) -> None:
    spec = QueueSpec("desk", ("ticket.*",), prefetch=3)
    release = asyncio.Event()
    running: list[str | None] = []
    peak = 0
    done: list[str | None] = []

    async def blocking(delivery: Delivery) -> None:
        nonlocal peak
        running.append(delivery.message_id)
        peak = max(peak, len(running))
        try:
            await release.wait()
        finally:
            running.remove(delivery.message_id)
            done.append(delivery.message_id)

    await bus_under_test.consume(spec, blocking)
    for n in range(7):
        await bus_under_test.bus.publish(message(f"m-{n}"))

    async def window_full() -> bool:
        return len(running) == 3

    try:
        await eventually(window_full, message="three handlers running")
        # Proving "no fourth" needs a moment in which a fourth could have started.
        await asyncio.sleep(0.3)
        assert len(running) == 3
    finally:
        release.set()  # blocked handlers would otherwise hold up the teardown's cancel()

    async def all_done() -> bool:
        return len(done) == 7

    await eventually(all_done, message="all seven handled")
    assert peak == 3


async def test_stopping_a_subscription_lets_running_handlers_finish(
    bus_under_test: BusUnderTest,
) -> None:
    started, finish = asyncio.Event(), asyncio.Event()
    outcome: list[str] = []

    async def slow(delivery: Delivery) -> None:
        started.set()
        try:
            await finish.wait()
        except asyncio.CancelledError:
            outcome.append("interrupted")
            raise
        outcome.append(f"finished {delivery.message_id} on delivery {delivery.delivery_count}")

    subscription = await bus_under_test.consume(DESK, slow)
    await bus_under_test.bus.publish(message("m-slow"))
    await asyncio.wait_for(started.wait(), 10)

    bus_under_test.subscriptions.remove(subscription)
    stopping = asyncio.create_task(subscription.cancel())
    try:
        await asyncio.sleep(0.1)
        assert not stopping.done(), "cancel() returned while a handler was still running"
    finally:
        finish.set()
        await asyncio.wait_for(stopping, 10)
    assert outcome == ["finished m-slow on delivery 0"]

    # It was acked, not handed back: a new consumer sees only what comes next.
    inbox = Inbox()
    await bus_under_test.consume(DESK, inbox.handler)
    await bus_under_test.bus.publish(message("m-next"))
    await eventually(lambda: inbox.has_handled("m-next"))
    assert inbox.ids() == ["m-next"]


async def test_publishing_on_a_closed_bus_raises_publish_error(
    bus_under_test: BusUnderTest,
) -> None:
    await bus_under_test.bus.declare(DESK)
    await bus_under_test.bus.close()
    with pytest.raises(PublishError) as raised:
        await bus_under_test.bus.publish(message("m-late"))
    assert not raised.value.unroutable


async def test_a_replayed_dead_letter_comes_back_whole_and_counted_afresh(
    bus_under_test: BusUnderTest,
) -> None:
    inbox = Inbox()
    refused: list[int] = []

    def refuse_once(delivery: Delivery) -> Exception | None:
        if refused:
            return None
        refused.append(delivery.delivery_count)
        return PoisonMessage("not yet")

    inbox.fail["m-bad"] = refuse_once
    await bus_under_test.consume(DESK, inbox.handler)
    await bus_under_test.bus.publish(message("m-bad", "ticket.updated"))
    await eventually(lambda: bus_under_test.dead_letters("desk"), message="dead letter")

    assert await bus_under_test.bus.replay_dead_letters("desk") == 1
    await eventually(lambda: inbox.has_handled("m-bad"), message="replayed and handled")

    # (The routing key is not compared: RabbitMQ hands the replayed copy out under its queue's
    # name, the memory bus under the original key.)
    assert [(d.message_id, d.body, d.delivery_count) for d in inbox.deliveries] == [
        ("m-bad", b'{"id": "m-bad"}', 0),
        ("m-bad", b'{"id": "m-bad"}', 0),
    ]
    assert await bus_under_test.dead_letters("desk") == []


async def test_a_paused_subscription_takes_nothing_new_and_loses_nothing_on_resume(
    bus_under_test: BusUnderTest,
) -> None:
    """The consumer pauses through a database outage (spoc_platform.consumer): what arrives
    meanwhile waits in the queue, and every message of it is delivered, once, on resume."""
    inbox = Inbox()
    subscription = await bus_under_test.consume(DESK, inbox.handler)
    await bus_under_test.bus.publish(message("m-before"))
    await eventually(lambda: inbox.has_handled("m-before"))

    # Paused while the consumer waits for its next message: the first to come must wait too.
    await subscription.pause()
    await bus_under_test.bus.publish(message("m-1"))
    await bus_under_test.bus.publish(message("m-2", "ticket.closed"))
    await asyncio.sleep(0.3)  # time enough for a delivery that must not happen
    assert inbox.ids() == ["m-before"]

    await subscription.resume()
    await eventually(lambda: _async(len(inbox.handled) == 3), message="both delivered")
    await bus_under_test.bus.publish(message("m-after"))
    await eventually(lambda: inbox.has_handled("m-after"), message="the queue moved on")

    # (Not their order: the memory bus puts a message taken while paused behind the others.)
    assert inbox.ids()[0] == "m-before" and inbox.ids()[-1] == "m-after"
    assert sorted(inbox.ids()[1:3]) == ["m-1", "m-2"]
    assert len(inbox.ids()) == 4
    assert await bus_under_test.dead_letters("desk") == []


async def _async(value: bool) -> bool:
    return value
