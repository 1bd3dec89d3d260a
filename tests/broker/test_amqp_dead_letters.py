"""Working dead letters on a real RabbitMQ: list, show, replay and purge, queue by queue."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from spoc_platform.bus import EVENTS_EXCHANGE, PublishError, QueueSpec
from spoc_platform.bus.amqp import AmqpBus
from spoc_platform.bus.amqp_dead_letters import (
    DeadLetterQueueMissing,
    list_dead_letters,
    purge_dead_letters,
    replay_dead_letters,
)
from tests.support import RABBITMQ_API, RABBITMQ_AUTH, RabbitAdmin, eventually

pytestmark = pytest.mark.broker

# Two services that both take ticket.created: a replay for one must not reach the other.
ROUTING = QueueSpec("routing", ("ticket.created",), delivery_limit=3)
NOTIFY = QueueSpec("notify", ("ticket.created",), delivery_limit=3)


@pytest.fixture
async def connection(rabbit: RabbitAdmin) -> AsyncIterator[AbstractRobustConnection]:
    bus = AmqpBus(rabbit.amqp_url, publish_timeout=5)
    await bus.connect()
    try:
        for spec in (ROUTING, NOTIFY):
            await bus.declare(spec)
    finally:
        await bus.close()
    connection = await aio_pika.connect_robust(rabbit.amqp_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def channel(connection: AbstractRobustConnection) -> AsyncIterator[AbstractChannel]:
    channel = await connection.channel(publisher_confirms=True)
    try:
        yield channel
    finally:
        await channel.close()


def envelope(ticket: str) -> bytes:
    return json.dumps(
        {
            "id": str(uuid.uuid4()),
            "type": "ticket.created",
            "version": 1,
            "ticket_id": ticket,
            "data": {},
        }
    ).encode()


async def publish(channel: AbstractChannel, message_id: str, body: bytes) -> None:
    exchange = await channel.get_exchange(EVENTS_EXCHANGE)
    await exchange.publish(
        aio_pika.Message(body, message_id=message_id, type="ticket.created"),
        routing_key="ticket.created",
    )


async def kill_on(channel: AbstractChannel, queue_name: str, count: int) -> None:
    """Takes `count` messages off a service queue and rejects them: the broker dead-letters."""
    queue = await channel.get_queue(queue_name)
    for _ in range(count):
        message = await eventually(
            lambda: queue.get(no_ack=False, fail=False), message=f"a message on {queue_name}"
        )
        await message.reject(requeue=False)


async def depth(rabbit: RabbitAdmin, queue: str) -> int:
    # The management API's counts lag by a few seconds; a passive declare is exact.
    connection = await aio_pika.connect(rabbit.amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def dead_routing_letters(rabbit: RabbitAdmin, channel: AbstractChannel, *ids: str) -> None:
    for message_id in ids:
        await publish(channel, message_id, envelope(f"t-{message_id}"))
    await kill_on(channel, "routing.events", len(ids))
    # Notify handled its copies: only routing's died.
    await kill_on_ack(channel, "notify.events", len(ids))

    async def all_dead() -> bool:
        return await depth(rabbit, "routing.dead") == len(ids)

    await eventually(all_dead, message="dead letters arrived")


async def kill_on_ack(channel: AbstractChannel, queue_name: str, count: int) -> None:
    queue = await channel.get_queue(queue_name)
    for _ in range(count):
        message = await eventually(lambda: queue.get(no_ack=False, fail=False))
        await message.ack()


async def test_listing_dead_letters_shows_their_original_type_reason_and_death_and_keeps_them(
    rabbit: RabbitAdmin, connection: AbstractRobustConnection, channel: AbstractChannel
) -> None:
    await dead_routing_letters(rabbit, channel, "m-1", "m-2", "m-3")

    listed = await list_dead_letters(connection, "routing", limit=10)

    assert [d.message_id for d in listed] == ["m-1", "m-2", "m-3"]
    first = listed[0]
    # The dead copy travels under the dead-letter key "routing"; the original key is kept.
    assert first.routing_key == "ticket.created"
    assert json.loads(first.body)["ticket_id"] == "t-m-1"
    assert first.reason == "rejected"
    assert first.attempts >= 1
    assert first.dead_at is not None
    assert datetime.now(UTC) - first.dead_at < timedelta(minutes=1)
    # Listing is a look, not a take: all three are still there, in the same order.
    assert await depth(rabbit, "routing.dead") == 3
    assert [d.message_id for d in await list_dead_letters(connection, "routing", 2)] == [
        "m-1",
        "m-2",
    ]


async def test_a_consumer_recorded_error_and_attempts_are_shown_with_the_broker_reason(
    rabbit: RabbitAdmin, connection: AbstractRobustConnection, channel: AbstractChannel
) -> None:
    # A consumer that dead-letters by itself publishes the copy with what it knows.
    dead = await channel.get_exchange("spoc.dead")
    await dead.publish(
        aio_pika.Message(
            envelope("t-9"),
            message_id="m-9",
            headers={
                "x-spoc-error": "KeyError: 'group'",
                "x-spoc-attempts": 10,
                "x-spoc-original-routing-key": "ticket.created",
                "x-spoc-dead-at": "2026-01-02T03:04:05+00:00",
            },
        ),
        routing_key="routing",
    )
    await eventually(lambda: list_dead_letters(connection, "routing", 10))

    (letter,) = await list_dead_letters(connection, "routing", 10)

    assert (letter.message_id, letter.routing_key) == ("m-9", "ticket.created")
    assert letter.reason == "KeyError: 'group'"
    assert letter.attempts == 10
    assert letter.dead_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


async def test_replay_moves_the_chosen_dead_letters_to_the_service_queue_only(
    rabbit: RabbitAdmin, connection: AbstractRobustConnection, channel: AbstractChannel
) -> None:
    await dead_routing_letters(rabbit, channel, "m-1", "m-2", "m-3")

    assert await replay_dead_letters(connection, "routing", ["m-2"]) == 1

    assert [d.message_id for d in await list_dead_letters(connection, "routing", 10)] == [
        "m-1",
        "m-3",
    ]
    queue = await channel.get_queue("routing.events")
    replayed = await eventually(lambda: queue.get(no_ack=False, fail=False))
    assert replayed.message_id == "m-2"
    assert json.loads(replayed.body)["ticket_id"] == "t-m-2"
    assert replayed.headers["x-spoc-original-routing-key"] == "ticket.created"
    assert "x-death" not in replayed.headers
    await replayed.ack()
    # Notify handled ticket.created already: the replay did not go through the topic exchange.
    assert await depth(rabbit, "notify.events") == 0
    assert await depth(rabbit, "routing.events") == 0


async def test_replaying_again_finds_nothing_and_a_second_death_keeps_the_original_type(
    rabbit: RabbitAdmin, connection: AbstractRobustConnection, channel: AbstractChannel
) -> None:
    await dead_routing_letters(rabbit, channel, "m-1", "m-2")

    assert await replay_dead_letters(connection, "routing", None) == 2
    assert await replay_dead_letters(connection, "routing", None) == 0
    assert await replay_dead_letters(connection, "routing", ["m-1"]) == 0
    assert await depth(rabbit, "routing.events") == 2
    assert await depth(rabbit, "notify.events") == 0

    # Still failing after the replay: it dies again and still reads as ticket.created.
    await kill_on(channel, "routing.events", 2)
    await eventually(lambda: list_dead_letters(connection, "routing", 10))
    again = await list_dead_letters(connection, "routing", 10)
    assert {d.message_id for d in again} == {"m-1", "m-2"}
    assert {d.routing_key for d in again} == {"ticket.created"}


async def test_purge_drops_only_the_named_dead_letters_or_all_of_them(
    rabbit: RabbitAdmin, connection: AbstractRobustConnection, channel: AbstractChannel
) -> None:
    await dead_routing_letters(rabbit, channel, "m-1", "m-2", "m-3")

    assert await purge_dead_letters(connection, "routing", ["m-3", "m-404"]) == 1
    assert [d.message_id for d in await list_dead_letters(connection, "routing", 10)] == [
        "m-1",
        "m-2",
    ]
    assert await purge_dead_letters(connection, "routing", None) == 2
    assert await list_dead_letters(connection, "routing", 10) == []
    assert await depth(rabbit, "routing.events") == 0


async def test_a_service_without_a_dead_letter_queue_is_named_as_such(
    connection: AbstractRobustConnection,
) -> None:
    with pytest.raises(DeadLetterQueueMissing, match=r"nobody\.dead"):
        await list_dead_letters(connection, "nobody", 10)


def test_the_cli_lists_shows_replays_and_purges_on_the_broker_directly(
    rabbit: RabbitAdmin,
) -> None:
    from typer.testing import CliRunner

    from spoc.cli import app

    async def prepare() -> None:
        bus = AmqpBus(rabbit.amqp_url, publish_timeout=5)
        await bus.connect()
        try:
            for spec in (ROUTING, NOTIFY):
                await bus.declare(spec)
        finally:
            await bus.close()
        connection = await aio_pika.connect_robust(rabbit.amqp_url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            await dead_routing_letters(rabbit, channel, "m-1", "m-2")
        finally:
            await connection.close()

    asyncio.run(prepare())
    runner = CliRunner()

    progress: list[str] = []

    def spoc(*args: str) -> str:
        done = runner.invoke(app, [*args, "--amqp-url", rabbit.amqp_url])
        assert done.exit_code == 0, done.output
        progress.append(done.stderr)  # a long command's progress goes there, not in its answer
        return done.stdout

    table = spoc("dead-letters", "list", "routing").splitlines()
    assert table[0].split() == ["ID", "TYPE", "TICKET", "ATTEMPTS", "AGE", "REASON"]
    assert [row.split()[:3] for row in table[1:3]] == [
        ["m-1", "ticket.created", "t-m-1"],
        ["m-2", "ticket.created", "t-m-2"],
    ]
    assert (
        json.loads(spoc("dead-letters", "show", "routing", "m-2", "--json"))["envelope"][
            "ticket_id"
        ]
        == "t-m-2"
    )
    assert spoc("dead-letters", "replay", "routing", "m-1").strip() == "routing: replayed 1"
    assert "routing: replaying dead letters: 1/1 m-1" in progress[-1].splitlines()
    assert spoc("dead-letters", "purge", "routing", "--all", "--yes").strip() == "routing: purged 1"
    assert json.loads(spoc("dead-letters", "list", "routing", "--json")) == []
    assert asyncio.run(depth(rabbit, "routing.events")) == 1

    refused = runner.invoke(app, ["dead-letters", "purge", "routing", "--amqp-url", "x"])
    assert refused.exit_code == 2 and "--all" in refused.output


def test_status_reads_queue_depth_consumers_and_dead_letters_from_the_management_api(
    rabbit: RabbitAdmin,
) -> None:
    from typer.testing import CliRunner

    from spoc.cli import app
    from tests.localstack import _free_port
    from tests.support import RABBITMQ_API

    async def prepare() -> None:
        bus = AmqpBus(rabbit.amqp_url, publish_timeout=5)
        await bus.connect()
        try:
            for spec in (ROUTING, NOTIFY):
                await bus.declare(spec)
        finally:
            await bus.close()
        connection = await aio_pika.connect_robust(rabbit.amqp_url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            await dead_routing_letters(rabbit, channel, "m-1", "m-2")
        finally:
            await connection.close()

    asyncio.run(prepare())
    api = RABBITMQ_API.replace("://", "://guest:guest@")
    args = ["status", "--rabbitmq-api", api, "--vhost", rabbit.vhost, "--json"]
    for option in ("--intake-url", "--routing-url", "--sla-url", "--notify-url"):
        args += [option, f"http://127.0.0.1:{_free_port()}"]  # nothing serves there

    def status() -> dict[str, dict[str, object]]:
        done = CliRunner().invoke(app, args)
        assert done.exit_code == 1, done.output  # nothing serves on those ports
        return {row["service"]: row for row in json.loads(done.output)}

    # The management API refreshes its message counts every few seconds: poll, with a deadline.
    deadline = time.monotonic() + 30
    while (rows := status())["routing"]["dead"] != 2:
        assert time.monotonic() < deadline, rows
        time.sleep(0.5)
    assert rows["routing"]["ready"] is False and "unreachable" in str(rows["routing"]["problem"])
    assert (rows["routing"]["queue_ready"], rows["routing"]["consumers"]) == (0, 0)
    assert (rows["notify"]["dead"], rows["notify"]["queue_ready"]) == (0, 0)
    assert rows["intake"]["queue_ready"] is None  # no intake queue declared in this vhost


class ForeignText(str):
    """A header value as a client that does not speak UTF-8 would send it (Latin-1 bytes)."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return str(self).encode("latin-1")


async def test_each_dead_letter_is_read_from_whatever_its_headers_and_properties_say(
    connection: AbstractRobustConnection, channel: AbstractChannel
) -> None:
    first, second = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)
    letters = [
        # Dead-lettered by the broker twice, after an expiry it does not count: the key is the
        # oldest death's, the reason the newest's, the attempts their sum.
        aio_pika.Message(
            b"{}",
            message_id="m-broker",
            headers={
                "x-death": [
                    {
                        "reason": "delivery_limit",
                        "count": 1,
                        "queue": "routing.events",
                        "routing-keys": ["routing.events"],
                        "time": second,
                    },
                    {
                        "reason": "rejected",
                        "count": 2,
                        "queue": "routing.events",
                        "routing-keys": ["ticket.assigned"],
                        "time": first,
                    },
                    {"reason": "expired", "count": 0},
                    {"reason": "maxlen"},  # no count: none to add
                    "not a death",
                ]
            },
        ),
        # Dead-lettered by a consumer, then by the broker: both reasons; what cannot be read
        # (a text count, a text time, the queue's own name as the key) is passed over.
        aio_pika.Message(
            b"{}",
            message_id="m-both",
            type="ticket.updated",
            headers={
                "x-first-death-reason": "rejected",
                "x-spoc-error": "KeyError: 'group'",
                "x-spoc-attempts": "7",
                "x-spoc-dead-at": "yesterday",
                "x-spoc-original-routing-key": "routing.events",
                "x-death": [
                    {"reason": "expired", "count": 4, "routing-keys": ["routing"], "time": first}
                ],
            },
        ),
        # The recorded key wins over the deaths' and the type.
        aio_pika.Message(
            b"{}",
            message_id="m-recorded",
            type="ticket.updated",
            headers={
                "x-spoc-original-routing-key": "ticket.escalated",
                "x-spoc-attempts": 2,
                "x-death": [{"reason": "rejected", "count": 1, "routing-keys": ["ticket.other"]}],
            },
        ),
        # From a client of its own: a Latin-1 error, a number for a key, a flag for a count.
        aio_pika.Message(
            b'{"type": "ticket.created"}',
            message_id="m-foreign",
            headers={
                "x-spoc-error": ForeignText("prioridad inválida"),
                "x-spoc-original-routing-key": 17,
                "x-spoc-attempts": True,
                "x-spoc-dead-at": "2026-01-02T05:04:05+02:00",
            },
        ),
        # Nothing to go by but the message's own timestamp.
        aio_pika.Message(b'["not", "an", "envelope"]', message_id="m-bare", timestamp=first),
    ]
    dead = await channel.get_exchange("spoc.dead")
    for letter in letters:
        await dead.publish(letter, routing_key="routing")

    listed = await list_dead_letters(connection, "routing", 10)

    assert [(d.message_id, d.routing_key, d.reason, d.attempts, d.dead_at) for d in listed] == [
        ("m-broker", "ticket.assigned", "delivery_limit", 3, second),
        ("m-both", "ticket.updated", "rejected: KeyError: 'group'", 4, first),
        ("m-recorded", "ticket.escalated", "rejected", 2, None),
        ("m-foreign", "ticket.created", "prioridad inv\ufffdlida", 0, first),
        ("m-bare", "", "unknown", 0, first),
    ]
    assert [d.body for d in listed] == [m.body for m in letters]
    assert await list_dead_letters(connection, "routing", 0) == []
    assert [d.message_id for d in await list_dead_letters(connection, "routing", 1)] == ["m-broker"]


async def test_a_replayed_copy_keeps_the_message_and_its_own_headers_and_counts_replays(
    connection: AbstractRobustConnection, channel: AbstractChannel
) -> None:
    dead = await channel.get_exchange("spoc.dead")
    await dead.publish(
        aio_pika.Message(
            envelope("t-1"),
            message_id="m-1",
            correlation_id="c-1",
            type="ticket.created",
            headers={
                "x-tenant": "acme",
                "x-spoc-error": "boom",
                "x-spoc-attempts": 3,
                "x-spoc-dead-at": "2026-01-02T03:04:05+00:00",
                "x-spoc-original-routing-key": "ticket.created",
                "x-first-death-reason": "rejected",
                "x-first-death-queue": "routing.events",
                "x-first-death-exchange": "spoc.events",
                "x-last-death-reason": "rejected",
                "x-last-death-queue": "routing.events",
                "x-last-death-exchange": "spoc.events",
                "x-death": [{"reason": "rejected", "count": 1}],
            },
        ),
        routing_key="routing",
    )
    queue = await channel.get_queue("routing.events")

    replays = []
    for _ in range(2):
        assert await replay_dead_letters(connection, "routing", ["m-1"]) == 1
        replayed = await eventually(lambda: queue.get(no_ack=False, fail=False))
        replays.append(replayed)
        # Still failing: the broker dead-letters the copy again, and it is replayed again.
        await replayed.reject(requeue=False)
        await eventually(lambda: list_dead_letters(connection, "routing", 10))

    first, second = replays
    assert (first.message_id, first.correlation_id, first.type) == ("m-1", "c-1", "ticket.created")
    assert first.content_type == "application/json"  # the dead copy had none
    assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert json.loads(first.body)["ticket_id"] == "t-1"
    headers = {k: v for k, v in first.headers.items() if k != "x-delivery-count"}
    assert headers == {
        "x-tenant": "acme",
        "x-spoc-original-routing-key": "ticket.created",
        "x-spoc-replays": 1,
    }
    assert second.headers["x-spoc-replays"] == 2
    assert second.headers["x-spoc-original-routing-key"] == "ticket.created"
    assert "x-death" not in second.headers


async def test_a_replay_the_service_queue_cannot_take_raises_and_leaves_the_letter_dead(
    rabbit: RabbitAdmin, connection: AbstractRobustConnection, channel: AbstractChannel
) -> None:
    await dead_routing_letters(rabbit, channel, "m-1")
    await channel.queue_delete("routing.events")

    with pytest.raises(
        PublishError, match=r"^routing\.events did not take the replayed message"
    ) as raised:
        await replay_dead_letters(connection, "routing", None)
    assert raised.value.unroutable  # returned by the broker: no such queue

    # Still dead, once the failed pass's channel has given it back (a failed pass does not
    # wait for that, as a successful one does).
    async def dead_ids() -> list[str | None]:
        return [d.message_id for d in await list_dead_letters(connection, "routing", 10)]

    assert await eventually(dead_ids, message="the letter still dead") == ["m-1"]


async def test_working_dead_letters_leaves_no_channel_open(
    rabbit: RabbitAdmin, connection: AbstractRobustConnection, channel: AbstractChannel
) -> None:
    """An operator's session (or the admin API's long-lived connection) runs many passes over
    a dead-letter queue: each must close the channels it opened."""
    dead = await channel.get_exchange("spoc.dead")
    for n in range(1, 7):
        await dead.publish(aio_pika.Message(envelope(f"t-{n}"), message_id=f"m-{n}"), "routing")
    await channel.close()

    assert len(await list_dead_letters(connection, "routing", 2)) == 2
    assert await replay_dead_letters(connection, "routing", ["m-1", "m-2"]) == 2
    assert await purge_dead_letters(connection, "routing", ["m-3", "m-4"]) == 2
    assert [d.message_id for d in await list_dead_letters(connection, "routing", 10)] == [
        "m-5",
        "m-6",
    ]
    assert await purge_dead_letters(connection, "routing", None) == 2

    # The management API lists channels a few seconds late: once a channel opened after all
    # of those calls is listed, any channel they left open would be too.
    marker = await connection.channel()
    async with httpx.AsyncClient(base_url=RABBITMQ_API, auth=RABBITMQ_AUTH) as api:

        async def only_the_marker_open() -> bool:
            response = await api.get(f"/vhosts/{rabbit.vhost}/channels")
            response.raise_for_status()
            return [c["number"] for c in response.json()] == [marker.number]

        await eventually(only_the_marker_open, timeout=30, interval=0.5)


async def test_the_bus_lists_the_oldest_hundred_dead_letters_unless_told_otherwise(
    rabbit: RabbitAdmin, channel: AbstractChannel
) -> None:
    dead = await channel.get_exchange("spoc.dead")
    for n in range(101):
        await dead.publish(aio_pika.Message(b"{}", message_id=f"m-{n:03d}"), "routing")
    bus = AmqpBus(rabbit.amqp_url, publish_timeout=5)
    await bus.connect()
    try:
        listed = await bus.dead_letters("routing")
        assert [d.message_id for d in listed] == [f"m-{n:03d}" for n in range(100)]
        assert len(await bus.dead_letters("routing", limit=101)) == 101
    finally:
        await bus.close()


async def test_a_replayed_copy_names_the_key_it_was_first_published_with_not_its_queue(
    connection: AbstractRobustConnection, channel: AbstractChannel
) -> None:
    # Sent straight to the queue (the default exchange, keyed by the queue's name), then
    # rejected: the broker's x-death names only the queue; the type says what it is.
    await channel.default_exchange.publish(
        aio_pika.Message(b"{}", message_id="m-1", type="ticket.created"), "routing.events"
    )
    await kill_on(channel, "routing.events", 1)
    await eventually(lambda: list_dead_letters(connection, "routing", 10))

    assert await replay_dead_letters(connection, "routing", ["m-1"]) == 1

    queue = await channel.get_queue("routing.events")
    replayed = await eventually(lambda: queue.get(no_ack=True, fail=False))
    assert replayed.headers["x-spoc-original-routing-key"] == "ticket.created"


async def test_a_replay_reports_how_many_it_may_move_and_each_id_it_moved(
    rabbit: RabbitAdmin, connection: AbstractRobustConnection, channel: AbstractChannel
) -> None:
    """A long replay shows its progress: the total first, then every id as it is moved (a
    letter without an id is reported as "")."""
    dead = await channel.get_exchange("spoc.dead")
    for message_id in ("m-1", "m-2", "m-3"):
        await dead.publish(aio_pika.Message(b"{}", message_id=message_id), "routing")
    # aio-pika gives every message it sends an id; another client may send none.
    async with httpx.AsyncClient(base_url=RABBITMQ_API, auth=RABBITMQ_AUTH) as api:
        response = await api.post(
            f"/exchanges/{rabbit.vhost}/spoc.dead/publish",
            json={
                "properties": {},
                "routing_key": "routing",
                "payload": "{}",
                "payload_encoding": "string",
            },
        )
        response.raise_for_status()
        assert response.json() == {"routed": True}
    assert await depth(rabbit, "routing.dead") == 4

    totals: list[int] = []
    moved: list[str] = []
    replayed = await replay_dead_letters(
        connection,
        "routing",
        ["m-3", "m-404"],
        on_total=totals.append,
        on_replayed=moved.append,
    )
    assert (replayed, totals, moved) == (1, [2], ["m-3"])

    totals.clear()
    moved.clear()
    replayed = await replay_dead_letters(
        connection, "routing", None, on_total=totals.append, on_replayed=moved.append
    )
    assert (replayed, totals, moved) == (3, [3], ["m-1", "m-2", ""])


async def test_each_pass_returns_once_the_letters_it_left_are_back_without_waiting_longer(
    rabbit: RabbitAdmin,
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A list, replay or purge by id hands back what it did not take before it returns, so the
    operator's next look sees them; it returns as soon as they are back, not after the limit."""
    from spoc_platform.bus import amqp_dead_letters

    # A limit no healthy broker needs: one pass that waited for it would show, and the bound
    # below leaves the three honest passes room on a loaded machine.
    monkeypatch.setattr(amqp_dead_letters, "SETTLE_TIMEOUT", 30.0)
    dead = await channel.get_exchange("spoc.dead")
    for n in range(1, 6):
        await dead.publish(aio_pika.Message(b"{}", message_id=f"m-{n}"), "routing")

    started = time.monotonic()
    assert len(await list_dead_letters(connection, "routing", 10)) == 5
    assert await depth(rabbit, "routing.dead") == 5
    assert await replay_dead_letters(connection, "routing", ["m-1", "m-2"]) == 2
    assert await depth(rabbit, "routing.dead") == 3
    assert await purge_dead_letters(connection, "routing", ["m-3", "m-4"]) == 2
    assert await depth(rabbit, "routing.dead") == 1
    assert time.monotonic() - started < 25


async def test_a_dead_letter_that_expires_while_the_queue_is_read_is_just_not_listed(
    rabbit: RabbitAdmin, connection: AbstractRobustConnection, channel: AbstractChannel
) -> None:
    """The queue's count includes a letter that expired behind another (the broker drops it
    only once it reaches the head): a pass that finds the queue empty early stops there."""
    dead = await channel.get_exchange("spoc.dead")
    await dead.publish(aio_pika.Message(b"{}", message_id="m-1"), "routing")
    await dead.publish(aio_pika.Message(b"{}", message_id="m-2", expiration=0.001), "routing")
    await asyncio.sleep(0.1)
    assert await depth(rabbit, "routing.dead") == 2

    assert [d.message_id for d in await list_dead_letters(connection, "routing", 10)] == ["m-1"]
    assert await replay_dead_letters(connection, "routing", None) == 1
