"""The front door's rate limits in a Redis every intake replica shares (D19): one budget across
replicas, one per desk, and a Redis that fails or hangs lets requests through (fail open),
counted in a metric, within the timeout. Against the real Redis on this machine."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio
from prometheus_client import REGISTRY
from pydantic import ValidationError

from spoc_intake.front_door import FrontDoor, desk_key_prefix
from spoc_intake.settings import IntakeSettings
from spoc_platform.web import ApiError
from tests.support import unavailable

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("SPOC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CLIENT = "198.51.100.70"


@pytest.fixture
async def redis_keys() -> AsyncIterator[str]:
    """A key prefix of this test's own in the real Redis; its keys are deleted afterwards (and
    only they: the Redis may be shared)."""
    client = redis.asyncio.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    try:
        await client.ping()
    except (redis.RedisError, OSError) as error:
        await client.aclose()
        unavailable("Redis", error)
    prefix = f"spoc-test-{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def settings(sqlite_url: str, **values: Any) -> IntakeSettings:
    values.setdefault("rate_limit_storage", REDIS_URL)
    return IntakeSettings(database_url=sqlite_url, trusted_networks="", **values)


async def admitted(door: FrontDoor, **call: Any) -> bool:
    """Whether the door lets a `create` through, False where it answers 429."""
    call.setdefault("client", CLIENT)
    call.setdefault("recipient", None)
    try:
        return await door.admit("create", **call)
    except ApiError as refused:
        assert refused.status == 429
        return False


def storage_errors() -> float:
    value = REGISTRY.get_sample_value("spoc_intake_rate_limit_storage_errors_total")
    assert value is not None, "the series exists from the start"
    return value


async def test_two_replicas_spend_from_one_budget(sqlite_url: str, redis_keys: str) -> None:
    replica = settings(
        sqlite_url, rate_limit_key_prefix=redis_keys, rate_limit_per_client="3/minute"
    )
    first, second = FrontDoor(replica), FrontDoor(replica)
    errors = storage_errors()
    try:
        spent = [await admitted(door) for door in (first, second, first)]
        assert spent == [True, True, True]
        # Each replica alone has spent at most two of the three: only a shared count refuses.
        assert not await admitted(second)
        assert not await admitted(first)
        # Other clients keep their own budget.
        assert await admitted(second, client="198.51.100.71")
        assert storage_errors() == errors
    finally:
        await first.aclose()
        await second.aclose()


async def test_each_desk_has_its_own_budget_in_a_shared_redis(
    sqlite_url: str, redis_keys: str
) -> None:
    budget = {"rate_limit_per_client": "1/minute"}
    desk = FrontDoor(settings(sqlite_url, rate_limit_key_prefix=f"{redis_keys}-a", **budget))
    other = FrontDoor(settings(sqlite_url, rate_limit_key_prefix=f"{redis_keys}-b", **budget))
    try:
        assert await admitted(desk) and not await admitted(desk)
        assert await admitted(other) and not await admitted(other)
    finally:
        await desk.aclose()
        await other.aclose()


def test_without_a_prefix_each_desk_database_names_its_own() -> None:
    def prefix(database_url: str) -> str:
        return desk_key_prefix(IntakeSettings(database_url=database_url))

    one = prefix("postgresql+asyncpg://intake:secret@db.example:5432/desk_one")
    # Every replica of a desk reaches the same database, whatever its driver or password.
    assert one == prefix("postgresql://intake:other@db.example:5432/desk_one")
    assert one != prefix("postgresql+asyncpg://intake:secret@db.example:5432/desk_two")
    assert one != prefix("postgresql+asyncpg://intake:secret@db2.example:5432/desk_one")
    assert "secret" not in one and one.startswith("spoc-intake:")
    set_here = IntakeSettings(database_url="sqlite+aiosqlite:///x", rate_limit_key_prefix="hq")
    assert desk_key_prefix(set_here) == "hq"


async def test_an_unreachable_redis_lets_requests_through_and_says_so(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Port 1: nothing listens, the connection is refused at once.
    door = FrontDoor(
        settings(
            sqlite_url,
            rate_limit_storage="redis://127.0.0.1:1/0",
            rate_limit_per_client="1/minute",
            rate_limit_storage_timeout=0.5,
        )
    )
    before = storage_errors()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="spoc_intake.front_door"):
        # Far over the budget of 1, every request is let through: fail open.
        assert [await admitted(door) for _ in range(3)] == [True, True, True]
    assert time.monotonic() - started < 3 * 0.5 + 1
    assert storage_errors() == before + 3
    warnings = [r for r in caplog.records if r.name == "spoc_intake.front_door"]
    assert len(warnings) == 1, "at most one warning a minute, not one per request"
    assert "admitted uncounted" in warnings[0].getMessage()
    await door.aclose()


async def test_a_redis_that_never_answers_holds_a_request_no_longer_than_the_timeout(
    sqlite_url: str,
) -> None:
    # Accepts connections and reads, never answers: a hung Redis.
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(1024):
            pass

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    door = FrontDoor(
        settings(
            sqlite_url,
            rate_limit_storage=f"redis://127.0.0.1:{port}/0",
            rate_limit_storage_timeout=0.3,
        )
    )
    before = storage_errors()
    try:
        started = time.monotonic()
        assert await admitted(door, recipient="someone@example.org")
        elapsed = time.monotonic() - started
        assert 0.25 < elapsed < 1.5, elapsed
        assert storage_errors() == before + 1
    finally:
        await door.aclose()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "url",
    [
        "memory://",
        "redis://127.0.0.1:6379/0",
        "redis://:password@redis.internal:6379/2",
        "rediss://redis.internal:6380/0",
        "redis+unix:///run/redis/redis.sock?db=0",
    ],
)
def test_the_storages_spoc_can_use_are_accepted(sqlite_url: str, url: str) -> None:
    assert IntakeSettings(database_url=sqlite_url, rate_limit_storage=url)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("memcached://cache:11211", "unknown rate-limit storage memcached://"),
        ("mongodb://user:hunter2@db/limits", "unknown rate-limit storage mongodb://"),
        ("valkey://cache:6379", "unknown rate-limit storage valkey://"),
        ("127.0.0.1:6379", "use memory://, redis://"),
        ("redis://cache:port/0", "unreadable port"),
    ],
)
def test_a_storage_spoc_cannot_use_is_refused_at_start(
    sqlite_url: str, url: str, said: str
) -> None:
    with pytest.raises(ValidationError) as error:
        IntakeSettings(database_url=sqlite_url, rate_limit_storage=url)
    assert "rate_limit_storage" in str(error.value)
    assert said in str(error.value)
    assert "hunter2" not in str(error.value)
