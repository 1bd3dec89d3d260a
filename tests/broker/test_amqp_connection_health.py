"""Losing either of the bus's two connections is reported, even while the other one is fine."""

from __future__ import annotations

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
            response = await api.delete(f"/connections/{name}", headers={"X-Reason": "test"})
            assert response.status_code == 204

        # Readiness asks is_healthy(): a service that can neither publish nor consume is
        # not ready, even while its robust connection is reconnecting (not "closed").
        async def unhealthy() -> bool:
            return not bus.is_healthy()

        await eventually(unhealthy, interval=0.005, message="is_healthy() false")

        async def reported_lost() -> bool:
            return False in states

        await eventually(reported_lost, message="the loss reported")

        async def back() -> bool:
            return states[-1] and bus.is_healthy()

        await eventually(back, timeout=20, message="reported back")
    finally:
        await bus.close()
    assert states[0] is True
