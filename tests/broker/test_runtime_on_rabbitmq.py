"""A service built for RabbitMQ from its settings: the broker gets the limits the deployer set."""

from __future__ import annotations

import httpx
import pytest

from spoc_platform.bus.amqp import AmqpBus
from spoc_routing.bootstrap import bootstrap
from spoc_routing.settings import RoutingSettings
from tests.support import RABBITMQ_API, RABBITMQ_AUTH, RabbitAdmin

pytestmark = pytest.mark.broker


async def test_a_service_built_for_rabbitmq_puts_its_own_queues_limits_from_its_settings(
    rabbit: RabbitAdmin, sqlite_url: str
) -> None:
    settings = RoutingSettings(
        database_url=sqlite_url,
        bus="amqp",
        amqp_url=rabbit.amqp_url,
        delivery_limit=7,
        dead_letter_max_length=500,
        dead_letter_ttl_days=3,
    )
    runtime = bootstrap(settings).runtime
    assert isinstance(runtime.bus, AmqpBus)
    await runtime.bus.connect()
    try:
        await runtime.declare()
    finally:
        await runtime.bus.close()
        await runtime.engine.dispose()

    async with httpx.AsyncClient(base_url=RABBITMQ_API, auth=RABBITMQ_AUTH) as client:
        response = await client.get(f"/policies/{rabbit.vhost}")
    response.raise_for_status()
    applied = {policy["name"]: policy["definition"] for policy in response.json()}
    # Only routing's own queue: each service may run with its own delivery limit.
    assert applied == {
        "spoc-routing-events": {"delivery-limit": 7 * 5},  # the backstop, above the consumer
        "spoc-routing-dead": {
            "delivery-limit": 1_000_000,
            "max-length": 500,
            "message-ttl": 3 * 86_400_000,
        },
    }


async def test_the_management_api_is_reached_where_the_settings_say_not_beside_the_broker(
    rabbit: RabbitAdmin, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Told that the API sits where nothing answers, the service does not go looking for it
    on the broker's host: the policies are not applied, and the log says what to do."""
    settings = RoutingSettings(
        database_url=sqlite_url,
        bus="amqp",
        amqp_url=rabbit.amqp_url,
        rabbitmq_management_url="http://guest:guest@127.0.0.1:1",
    )
    runtime = bootstrap(settings).runtime
    await runtime.bus.connect()
    try:
        await runtime.declare()
    finally:
        await runtime.bus.close()
        await runtime.engine.dispose()

    async with httpx.AsyncClient(base_url=RABBITMQ_API, auth=RABBITMQ_AUTH) as client:
        response = await client.get(f"/policies/{rabbit.vhost}")
    response.raise_for_status()
    assert response.json() == []
    assert any("run `spoc topology apply`" in r.getMessage() for r in caplog.records)
