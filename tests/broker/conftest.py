"""Fixtures of the broker layer: an AmqpBus connected to a vhost of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from spoc_platform.bus.amqp import AmqpBus
from tests.support import RabbitAdmin


@pytest.fixture
async def bus(rabbit: RabbitAdmin) -> AsyncIterator[AmqpBus]:
    amqp = AmqpBus(rabbit.amqp_url, publish_timeout=5)
    await amqp.connect()
    try:
        yield amqp
    finally:
        await amqp.close()
