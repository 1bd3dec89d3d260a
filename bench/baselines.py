"""What the machine does without Spoc, measured in the same run: raw aio-pika round trips and
raw asyncpg writes. The end-to-end figure is read as a ratio of these."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg

from bench.support import dsn_of

RAW_QUEUE = "bench.raw"


async def amqp_round_trips(
    amqp_url: str, messages: int, *, window: int = 100, prefetch: int = 100, body_size: int = 1000
) -> dict[str, Any]:
    """Publishes `messages` persistent messages with confirms (`window` in flight) to a durable
    quorum queue while consuming them with manual ack (prefetch `prefetch`), in this process."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        publisher = await connection.channel(publisher_confirms=True)
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=prefetch)
        queue = await consumer.declare_queue(
            RAW_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
        )
        all_in = asyncio.Event()
        received = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received >= messages:
                all_in.set()

        tag = await queue.consume(on_message, no_ack=False)
        body = b"x" * body_size
        slots = asyncio.Semaphore(window)
        exchange = publisher.default_exchange

        async def publish(i: int) -> None:
            try:
                await exchange.publish(
                    aio_pika.Message(
                        body,
                        message_id=str(i),
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=RAW_QUEUE,
                    timeout=30,
                )
            finally:
                slots.release()

        started = time.monotonic()
        tasks = []
        for i in range(messages):
            await slots.acquire()
            tasks.append(asyncio.create_task(publish(i)))
        await asyncio.gather(*tasks)
        confirmed = time.monotonic()
        await asyncio.wait_for(all_in.wait(), 120)
        finished = time.monotonic()
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
    return {
        "messages": messages,
        "window": window,
        "prefetch": prefetch,
        "body_bytes": body_size,
        "seconds": finished - started,
        "round_trips_per_s": messages / (finished - started),
        "publish_confirmed_per_s": messages / (confirmed - started),
    }


SCHEMA = """
CREATE TABLE bench_insert (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    payload text NOT NULL
);
CREATE SEQUENCE bench_ticket_number_seq;
CREATE TABLE bench_ticket (
    id uuid PRIMARY KEY,
    number bigint NOT NULL UNIQUE,
    subject text NOT NULL,
    description text NOT NULL,
    type text NOT NULL,
    requester_name text NOT NULL,
    requester_email text NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE bench_outbox (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    event_type text NOT NULL,
    ticket_id uuid,
    body text NOT NULL,
    created_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    published_at timestamptz
);
CREATE INDEX ix_bench_outbox_pending ON bench_outbox (next_attempt_at)
    WHERE published_at IS NULL;
"""

INSERT_ROW = "INSERT INTO bench_insert (payload) VALUES ($1)"
INSERT_TICKET = """
INSERT INTO bench_ticket (id, number, subject, description, type, requester_name,
                          requester_email, status, created_at, updated_at)
VALUES ($1, nextval('bench_ticket_number_seq'), $2, $3, 'incident', $4, $5, 'new', $6, $6)
RETURNING number
"""
INSERT_OUTBOX = """
INSERT INTO bench_outbox (event_id, event_type, ticket_id, body, created_at, next_attempt_at)
VALUES ($1, 'ticket.created', $2, $3, $4, $4)
"""


async def prepare_schema(database_url: str) -> None:
    conn = await asyncpg.connect(dsn_of(database_url))
    try:
        await conn.execute(SCHEMA)
    finally:
        await conn.close()


async def _time_boxed(
    database_url: str, connections: int, seconds: float, work: Any
) -> dict[str, Any]:
    conns = [await asyncpg.connect(dsn_of(database_url)) for _ in range(connections)]
    try:
        # One untimed call per connection prepares its statements.
        for conn in conns:
            await work(conn)
        deadline = time.monotonic() + seconds

        async def loop(conn: asyncpg.Connection) -> int:
            done = 0
            while time.monotonic() < deadline:
                await work(conn)
                done += 1
            return done

        started = time.monotonic()
        counts = await asyncio.gather(*(loop(c) for c in conns))
        elapsed = time.monotonic() - started
    finally:
        for conn in conns:
            await conn.close()
    return {
        "connections": connections,
        "seconds": elapsed,
        "count": sum(counts),
        "per_s": sum(counts) / elapsed,
    }


async def pg_inserts(database_url: str, connections: int, seconds: float) -> dict[str, Any]:
    """INSERT of one small row, each its own committed transaction (autocommit)."""
    payload = "x" * 100

    async def insert(conn: asyncpg.Connection) -> None:
        await conn.execute(INSERT_ROW, payload)

    return await _time_boxed(database_url, connections, seconds, insert)


async def pg_ticket_with_outbox(
    database_url: str, connections: int, seconds: float
) -> dict[str, Any]:
    """What intake's hot path writes at least: a ticket row and its outbox row, one commit."""
    description = "Since this morning the VPN disconnects every 5 minutes. " * 3

    async def transaction(conn: asyncpg.Connection) -> None:
        ticket_id = uuid.uuid4()
        now = datetime.now(UTC)
        body = json.dumps(
            {
                "id": str(uuid.uuid4()),
                "type": "ticket.created",
                "version": 1,
                "occurred_at": now.isoformat(),
                "source": "intake",
                "ticket_id": str(ticket_id),
                "data": {
                    "subject": "VPN drops every few minutes",
                    "description": description,
                    "requester": {"name": "Reza Karimi", "email": "reza@example.org"},
                },
            }
        )
        async with conn.transaction():
            await conn.fetchval(
                INSERT_TICKET,
                ticket_id,
                "VPN drops every few minutes",
                description,
                "Reza Karimi",
                "reza@example.org",
                now,
            )
            await conn.execute(INSERT_OUTBOX, uuid.uuid4(), ticket_id, body, now)

    return await _time_boxed(database_url, connections, seconds, transaction)
