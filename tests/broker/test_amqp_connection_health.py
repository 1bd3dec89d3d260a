"""Losing either of the bus's two connections is reported, even while the other one is fine."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from spoc_platform.bus.amqp import AmqpBus
from tests.support import RABBITMQ_API, RABBITMQ_AUTH, RabbitAdmin, eventually

pytestmark = pytest.mark.broker


@pytest.mark.parametrize("lost", ["spoc consume", "spoc publish"])
async def test_losing_one_connection_is_reported_until_it_is_back(
    rabbit: RabbitAdmin, lost: str
) -> None:
    states: list[bool] = []
    bus = AmqpBus(rabbit.amqp_url, publish_timeout=5, on_connection_change=states.append)
    await bus.connect()
    limit = f"/vhost-limits/{rabbit.vhost}/max-connections"
    try:
        async with httpx.AsyncClient(base_url=RABBITMQ_API, auth=RABBITMQ_AUTH) as api:

            async def listed() -> str:
                response = await api.get(f"/vhosts/{rabbit.vhost}/connections")
                response.raise_for_status()
                names = {
                    c["client_properties"].get("connection_name"): c["name"]
                    for c in response.json()
                }
                return str(names.get(lost, ""))

            name = await eventually(listed, timeout=20, message=f"{lost} listed")
            # A local broker takes the connection back within milliseconds: refuse it for as
            # long as the test looks (the vhost admits only the connection that is still up).
            (await api.put(limit, json={"value": 1})).raise_for_status()
            try:
                response = await api.delete(f"/connections/{name}", headers={"X-Reason": "test"})
                assert response.status_code == 204

                # Readiness asks is_healthy(): a service that cannot publish, or cannot
                # consume, is not ready while its robust connection reconnects ("not closed").
                async def unhealthy() -> bool:
                    return not bus.is_healthy()

                await eventually(unhealthy, message="is_healthy() false")
                await asyncio.sleep(1.5)  # a reconnect attempt or two, refused
                assert not bus.is_healthy(), "healthy again while the connection is refused"
                assert states[-1] is False
            finally:
                (await api.delete(limit)).raise_for_status()

        async def back() -> bool:
            return states[-1] and bus.is_healthy()

        await eventually(back, timeout=20, message="reported back")
    finally:
        await bus.close()
    assert states[0] is True
