"""Broker policies put through the real management API, on a vhost whose name has a slash."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import aio_pika
import httpx
import pytest

from spoc_platform.bus import QueueSpec
from spoc_platform.bus.amqp_policies import DeadLetterBounds, ManagementApi, legacy_limits
from tests.support import RABBITMQ_API, RABBITMQ_AUTH, RabbitAdmin, unavailable

pytestmark = pytest.mark.broker

SPECS = [
    QueueSpec("routing", ("ticket.created",), delivery_limit=4),
    QueueSpec("sla", ("ticket.*",), delivery_limit=6),
]


@pytest.fixture
def slashed() -> Iterator[RabbitAdmin]:
    """A vhost named like "spoc-test-…/desk": each API path must carry it as one segment."""
    slashed = RabbitAdmin(f"spoc-test-{uuid.uuid4().hex[:12]}%2Fdesk")
    try:
        slashed.create()
    except httpx.HTTPError as error:
        unavailable("RabbitMQ (management API on :15672)", error)
    try:
        yield slashed
    finally:
        slashed.delete()


async def test_applying_puts_exactly_the_policies_for_every_queue_on_the_urls_vhost(
    slashed: RabbitAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    api = ManagementApi.for_amqp_url(
        slashed.amqp_url, dead_letters=DeadLetterBounds(max_length=7, ttl_days=1)
    )
    assert api.vhost.endswith("/desk")

    with caplog.at_level(logging.INFO, logger="spoc_platform.bus.amqp_policies"):
        await api.apply(SPECS)

    async with httpx.AsyncClient(base_url=RABBITMQ_API, auth=RABBITMQ_AUTH) as client:
        response = await client.get(f"/policies/{slashed.vhost}")
    response.raise_for_status()
    applied = {
        p["name"]: {k: p[k] for k in ("pattern", "apply-to", "priority", "definition")}
        for p in response.json()
    }
    assert applied == api.policies(SPECS)
    assert applied["spoc-sla-dead"]["definition"] == {
        "delivery-limit": 1_000_000,
        "max-length": 7,
        "message-ttl": 86_400_000,
    }
    assert [r.getMessage() for r in caplog.records] == [
        "broker policies applied for routing.events, sla.events"
    ]


async def test_applying_with_the_wrong_password_raises(slashed: RabbitAdmin) -> None:
    api = ManagementApi.for_amqp_url(slashed.amqp_url.replace("guest:guest", "guest:wrong"))

    with pytest.raises(httpx.HTTPStatusError) as raised:
        await api.apply(SPECS)
    assert raised.value.response.status_code == 401


async def test_legacy_limits_names_only_existing_queues_with_a_limit_argument(
    slashed: RabbitAdmin,
) -> None:
    connection = await aio_pika.connect(slashed.amqp_url)
    async with connection:
        channel = await connection.channel()
        # As Spoc's first release declared them: the limit as a queue argument.
        await channel.declare_queue(
            "sla.events", durable=True, arguments={"x-queue-type": "quorum", "x-delivery-limit": 7}
        )
        await channel.declare_queue(
            "notify.events", durable=True, arguments={"x-queue-type": "quorum"}
        )
    specs = [
        QueueSpec("routing", ("ticket.created",)),  # not declared at all: skipped
        *SPECS[1:],
        QueueSpec("notify", ("ticket.created",)),
    ]

    assert await legacy_limits(ManagementApi.for_amqp_url(slashed.amqp_url), specs) == {
        "sla.events": 7
    }


@pytest.fixture
async def silent_api() -> AsyncIterator[str]:
    """A management API that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_an_api_that_does_not_answer_fails_the_call_after_its_timeout(
    silent_api: str,
) -> None:
    api = ManagementApi(silent_api, "desk", "guest", "guest", timeout=0.2)

    for call in (api.apply(SPECS), legacy_limits(api, SPECS)):
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException):
            await asyncio.wait_for(call, 3)
        assert time.monotonic() - started < 2
