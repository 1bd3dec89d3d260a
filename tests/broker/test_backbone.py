"""The backbone's promises on the real RabbitMQ: the whole topology before the first publish,
limits as policies, rolling deploys, poison messages and connection flaps."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from spoc_contracts import Envelope, TicketCommented, TicketUpdated
from spoc_contracts.topology import SUBSCRIPTIONS
from spoc_intake.bootstrap import bootstrap as bootstrap_intake
from spoc_intake.migrations import MIGRATIONS_DIR as INTAKE_MIGRATIONS
from spoc_intake.schemas import TicketCreate
from spoc_intake.settings import IntakeSettings
from spoc_platform.bus import Delivery, OutgoingMessage, QueueSpec
from spoc_platform.bus.amqp import AmqpBus
from spoc_platform.bus.amqp_policies import ManagementApi, legacy_limits
from spoc_platform.consumer import EventConsumer
from spoc_platform.db import create_engine, new_metadata
from spoc_platform.messaging_tables import define_messaging_tables
from spoc_platform.migrations import upgrade
from spoc_platform.retry import Backoff
from spoc_platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from tests.harness import envelope
from tests.support import RABBITMQ_API, RABBITMQ_AUTH, RabbitAdmin, eventually
from tests.tcp_proxy import CuttingProxy

pytestmark = pytest.mark.broker

FAST = Backoff(first=0.02, ceiling=0.05)


@pytest.fixture
async def unit_of_work(tmp_path: Path) -> AsyncIterator[UnitOfWorkFactory]:
    """One service database that every replica in a test shares, as replicas do."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'replicas.sqlite3'}")
    metadata = new_metadata()
    tables = define_messaging_tables(metadata)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield UnitOfWorkFactory(engine, tables, "desk")
    finally:
        await engine.dispose()


def queue_depth(rabbit: RabbitAdmin, name: str) -> int:
    return int(str(rabbit.queue(name).get("messages", 0)))


def updated(number: str) -> Envelope:
    return envelope(TicketUpdated(number=number, changes={"urgency": "high"}))


def commented(number: str) -> Envelope:
    return envelope(
        TicketCommented(
            number=number,
            comment_id=f"c-{number}",
            author_kind="agent",
            author_name="Sara Ahmadi",
            visibility="public",
            body="Looking into it.",
        )
    )


def outgoing(env: Envelope) -> OutgoingMessage:
    return OutgoingMessage(str(env.id), env.type, env.to_bytes())


async def dead_letters(
    rabbit: RabbitAdmin, queue: str
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(rabbit.amqp_url)
    async with connection:
        channel = await connection.channel()
        found = []
        dead = await channel.get_queue(queue)
        while (message := await dead.get(fail=False, no_ack=True)) is not None:
            found.append(message)
        return found


async def test_an_event_published_before_its_consumers_ever_ran_waits_in_their_queues(
    rabbit: RabbitAdmin, tmp_path: Path
) -> None:
    """A fresh namespace where only intake has started: its first tickets must still reach
    routing and notify once they come up (before, 40 of 40 were never acknowledged)."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'intake.sqlite3'}"
    upgrade(INTAKE_MIGRATIONS, database_url)
    intake = bootstrap_intake(IntakeSettings(database_url=database_url, amqp_url=rabbit.amqp_url))
    await intake.runtime.start()
    try:
        for service, bindings in SUBSCRIPTIONS.items():
            routing_keys = {
                str(b["routing_key"])
                for b in rabbit.bindings(f"{service}.events")
                if b["source"] == "spoc.events"
            }
            assert routing_keys == set(bindings), service
            assert rabbit.queue(f"{service}.dead")["type"] == "quorum"

        await intake.tickets.create(
            TicketCreate.model_validate(
                {
                    "subject": "Printer offline",
                    "description": "Third floor.",
                    "type": "incident",
                    "requester": {"name": "Reza Karimi", "email": "reza@example.org"},
                }
            ),
            idempotency_key=None,
        )

        async def waiting_for_routing_and_notify() -> bool:
            # Routing's queue also holds intake's token feed (credential.*), which sla hears
            # too: the ticket is what routing holds beyond sla.
            routing, sla = queue_depth(rabbit, "routing.events"), queue_depth(rabbit, "sla.events")
            return queue_depth(rabbit, "notify.events") == 1 and routing - sla == 1

        await eventually(waiting_for_routing_and_notify, message="ticket.created not queued")
    finally:
        await intake.runtime.stop()


async def test_limits_are_policies_so_a_new_limit_never_stops_a_service_from_starting(
    bus: AmqpBus, rabbit: RabbitAdmin
) -> None:
    # A queue as the previous release declared it, with its limit as a queue argument.
    connection = await aio_pika.connect(rabbit.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(
            "desk.events",
            durable=True,
            arguments={"x-queue-type": "quorum", "x-delivery-limit": 10},
        )

    handled: list[str] = []

    async def handler(delivery: Delivery) -> None:
        handled.append(str(delivery.message_id))

    for limit in (10, 20):
        spec = QueueSpec("desk", ("ticket.updated",), delivery_limit=limit)
        subscription = await bus.consume(spec, handler)  # no PRECONDITION_FAILED
        await bus.apply_policies([spec])
        message = updated(f"SD-{limit}")
        await bus.publish(outgoing(message))
        await eventually(lambda m=message: _contains(handled, str(m.id)), message="not consumed")
        await subscription.cancel()

    async with httpx.AsyncClient(base_url=RABBITMQ_API, auth=RABBITMQ_AUTH) as api:
        policy = (await api.get(f"/policies/{rabbit.vhost}/spoc-desk-events")).json()
        dead_policy = (await api.get(f"/policies/{rabbit.vhost}/spoc-desk-dead")).json()
    assert policy["definition"] == {"delivery-limit": 20 * 5}
    # The old argument still bounds that queue (RabbitMQ takes the lower): the topology step
    # names it for the one-time move in docs/runbooks.md.
    legacy = await legacy_limits(ManagementApi.for_amqp_url(rabbit.amqp_url), [spec])
    assert legacy == {"desk.events": 10}
    assert policy["pattern"] == r"^desk\.events$"
    assert set(dead_policy["definition"]) == {"delivery-limit", "max-length", "message-ttl"}


async def _contains(items: list[str], item: str) -> bool:
    return item in items


async def test_a_rolling_deploy_never_acknowledges_a_type_the_old_replica_cannot_handle(
    bus: AmqpBus, rabbit: RabbitAdmin, unit_of_work: UnitOfWorkFactory
) -> None:
    """The new release binds ticket.commented to the shared queue; the old replica, still
    consuming it, hands those events back until the new replica takes them."""
    spec = QueueSpec("desk", ("ticket.updated", "ticket.commented"), delivery_limit=10)
    handled: dict[str, list[str]] = {"old": [], "new": []}

    def replica(name: str, types: tuple[str, ...]) -> EventConsumer:
        async def record(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
            handled[name].append(envelope.type)

        consumer = EventConsumer(
            service="desk",
            unit_of_work=unit_of_work,
            handlers=dict.fromkeys(types, record),
            delivery_limit=spec.delivery_limit,
        )
        consumer.unhandled_retry = FAST
        return consumer

    old = replica("old", ("ticket.updated",))
    new = replica("new", ("ticket.updated", "ticket.commented"))
    subscriptions = [await bus.consume(spec, old.handle), await bus.consume(spec, new.handle)]
    try:
        for n in range(20):
            await bus.publish(outgoing(commented(f"SD-{n}")))

        async def all_handled() -> bool:
            return len(handled["new"]) == 20

        await eventually(all_handled, timeout=30, message="comments not all handled")
    finally:
        for subscription in subscriptions:
            await subscription.cancel()

    assert handled["old"] == []
    assert await dead_letters(rabbit, "desk.dead") == []


async def test_a_poison_message_is_dead_lettered_by_the_consumers_own_count_with_its_error(
    bus: AmqpBus, rabbit: RabbitAdmin, unit_of_work: UnitOfWorkFactory
) -> None:
    """No broker policy here, so nothing but the consumer bounds the retries: on RabbitMQ 4.3,
    where a nack no longer counts, this is what stops a poison message looping for ever."""
    spec = QueueSpec("desk", ("ticket.updated",), delivery_limit=3)
    attempts = 0

    async def broken(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        raise ValueError("cannot parse the priority matrix")

    consumer = EventConsumer(
        service="desk",
        unit_of_work=unit_of_work,
        handlers={"ticket.updated": broken},
        delivery_limit=spec.delivery_limit,
    )
    consumer.retry = FAST
    subscription = await bus.consume(spec, consumer.handle)
    try:
        poison = updated("SD-1")
        await bus.publish(outgoing(poison))
        dead = await eventually(
            lambda: dead_letters(rabbit, "desk.dead"), timeout=20, message="not dead-lettered"
        )
    finally:
        await subscription.cancel()

    assert attempts == 3
    assert [m.message_id for m in dead] == [str(poison.id)]
    headers = dead[0].headers
    assert "cannot parse the priority matrix" in str(headers["x-spoc-error"])
    assert headers["x-spoc-original-routing-key"] == "ticket.updated"
    assert headers["x-spoc-attempts"] == 3


async def test_connection_flaps_under_load_spend_no_attempts_and_dead_letter_nothing(
    rabbit: RabbitAdmin, unit_of_work: UnitOfWorkFactory
) -> None:
    """A proxy cuts the consumer's connection again and again while it works through a
    backlog, with a delivery limit of 1: a single spent attempt would dead-letter a message."""
    proxy = CuttingProxy(5672)
    proxy.start()
    flapping = AmqpBus(
        f"amqp://guest:guest@127.0.0.1:{proxy.port}/{rabbit.vhost}"
        "?heartbeat=10&reconnect_interval=0.2",
        publish_timeout=5,
    )
    direct = AmqpBus(rabbit.amqp_url, publish_timeout=5)
    spec = QueueSpec("desk", ("ticket.updated",), delivery_limit=1, prefetch=16)
    handled: set[str] = set()

    async def slow(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        await asyncio.sleep(0.005)
        handled.add(event.number)

    consumer = EventConsumer(
        service="desk",
        unit_of_work=unit_of_work,
        handlers={"ticket.updated": slow},
        delivery_limit=spec.delivery_limit,
    )
    await direct.connect()
    await flapping.connect()
    subscription = await flapping.consume(spec, consumer.handle)
    try:
        numbers = [f"SD-{n:04d}" for n in range(400)]
        for number in numbers:
            await direct.publish(outgoing(updated(number)))
        for _ in range(5):
            await asyncio.sleep(0.3)
            proxy.cut()

        async def all_handled() -> bool:
            return handled == set(numbers)

        await eventually(all_handled, timeout=60, message="backlog not handled through flaps")
    finally:
        await asyncio.wait_for(subscription.cancel(), 10)
        await flapping.close()
        await direct.close()
        proxy.stop()

    assert proxy.cuts >= 5
    assert await dead_letters(rabbit, "desk.dead") == []


async def test_the_connection_gauge_follows_the_bus_not_the_probes(rabbit: RabbitAdmin) -> None:
    proxy = CuttingProxy(5672)
    proxy.start()
    states: list[bool] = []
    flapping = AmqpBus(
        f"amqp://guest:guest@127.0.0.1:{proxy.port}/{rabbit.vhost}?reconnect_interval=0.2"
    )
    flapping.add_connection_listener(states.append)
    await flapping.connect()
    try:
        assert states[-1] is True
        proxy.cut()
        await eventually(lambda: _false_seen(states), message="loss not reported")
        await eventually(lambda: _last_true(states), message="reconnect not reported")
    finally:
        await flapping.close()
        proxy.stop()


async def _false_seen(states: list[bool]) -> bool:
    return False in states


async def _last_true(states: list[bool]) -> bool:
    return bool(states) and states[-1] and False in states


async def test_the_topology_step_makes_every_queue_and_policy_before_any_service_runs(
    rabbit: RabbitAdmin,
) -> None:
    from typer.testing import CliRunner

    from spoc.cli import app

    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["topology", "apply", "--amqp-url", rabbit.amqp_url],
        env={"SPOC_NOTIFY_DELIVERY_LIMIT": "3"},
    )
    assert result.exit_code == 0, result.output

    async with httpx.AsyncClient(base_url=RABBITMQ_API, auth=RABBITMQ_AUTH) as api:
        policies = {
            p["name"]: p["definition"] for p in (await api.get(f"/policies/{rabbit.vhost}")).json()
        }
    for service, bindings in SUBSCRIPTIONS.items():
        routing_keys = {
            str(b["routing_key"])
            for b in rabbit.bindings(f"{service}.events")
            if b["source"] == "spoc.events"
        }
        assert routing_keys == set(bindings), service
        assert f"spoc-{service}-dead" in policies
    assert policies["spoc-notify-events"] == {"delivery-limit": 3 * 5}
    assert policies["spoc-routing-events"] == {"delivery-limit": 10 * 5}


async def test_queues_an_earlier_release_declared_otherwise_are_used_as_they_are_and_logged(
    bus: AmqpBus, rabbit: RabbitAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    """Both queues as an earlier release declared them: each redeclare fails with 406 and closes
    its channel; the bus goes on with each queue as it is and names it in a warning."""
    old_dead: dict[str, Any] = {"x-queue-type": "quorum", "x-max-length": 100}
    old_events: dict[str, Any] = {"x-queue-type": "quorum", "x-delivery-limit": 10}
    connection = await aio_pika.connect(rabbit.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue("desk.dead", durable=True, arguments=old_dead)
        await channel.declare_queue("desk.events", durable=True, arguments=old_events)

    handled: list[str] = []

    async def handler(delivery: Delivery) -> None:
        handled.append(str(delivery.message_id))

    spec = QueueSpec("desk", ("ticket.updated",), delivery_limit=3)
    with caplog.at_level(logging.WARNING, logger="spoc_platform.bus.amqp"):
        subscription = await bus.consume(spec, handler)
        try:
            message = updated("SD-1")
            await bus.publish(outgoing(message))
            await eventually(lambda: _contains(handled, str(message.id)), message="not consumed")
        finally:
            await subscription.cancel()

    warnings = [r.getMessage() for r in caplog.records if r.name == "spoc_platform.bus.amqp"]
    assert [w.partition(" (")[0] for w in warnings] == [
        "queue desk.dead exists with other arguments; using it as it is",
        "queue desk.events exists with other arguments; using it as it is",
    ]
    assert all("PRECONDITION_FAILED" in w for w in warnings), warnings
    assert rabbit.queue("desk.dead")["arguments"] == old_dead
    assert rabbit.queue("desk.events")["arguments"] == old_events
    # Bound all the same: the dead-letter exchange reaches the old dead queue.
    assert [
        (b["source"], b["routing_key"]) for b in rabbit.bindings("desk.dead") if b["source"]
    ] == [("spoc.dead", "desk")]
