"""The token projection routing and sla are to keep: a revoked or expired token, or a feed
too stale to tell, authenticates nobody; events may come in any order and more than once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_platform.db import create_engine, new_metadata, utc_now
from spoc_platform.token_projection import (
    MAX_STALENESS,
    TokenProjectionTables,
    caller_of,
    define_token_projection,
    hash_token,
    record_heartbeat,
    record_issued,
    record_revoked,
)

pytestmark = pytest.mark.integration
TOKEN = "spoc_" + "t" * 43


@pytest.fixture
async def projection(database_url: str) -> AsyncIterator[tuple[AsyncEngine, TokenProjectionTables]]:
    metadata = new_metadata()
    tables = define_token_projection(metadata)
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield engine, tables
    finally:
        await engine.dispose()


async def issue(engine: AsyncEngine, tables: TokenProjectionTables, token_id: uuid.UUID) -> None:
    async with engine.begin() as conn:
        await record_issued(
            conn,
            tables,
            token_id=token_id,
            token_hash=hash_token(TOKEN),
            role="admin",
            subject_id=None,
            expires_at=utc_now() + timedelta(days=1),
        )


async def role(
    engine: AsyncEngine,
    tables: TokenProjectionTables,
    max_staleness: timedelta = MAX_STALENESS,
) -> str | None:
    async with engine.connect() as conn:
        found = await caller_of(conn, tables, TOKEN, now=utc_now(), max_staleness=max_staleness)
    return found.role if found else None


async def test_a_live_token_works_until_revoked_and_an_issue_replayed_does_not_revive_it(
    projection: tuple[AsyncEngine, TokenProjectionTables],
) -> None:
    engine, tables = projection
    token_id = uuid.uuid4()
    async with engine.begin() as conn:
        await record_heartbeat(conn, tables, heard_at=utc_now())
    await issue(engine, tables, token_id)
    await issue(engine, tables, token_id)  # redelivered
    assert await role(engine, tables) == "admin"

    async with engine.begin() as conn:
        await record_revoked(conn, tables, token_id=token_id, at=utc_now())
    assert await role(engine, tables) is None
    await issue(engine, tables, token_id)  # a late duplicate of the issue
    assert await role(engine, tables) is None


async def test_a_revocation_that_overtakes_its_issue_still_wins(
    projection: tuple[AsyncEngine, TokenProjectionTables],
) -> None:
    engine, tables = projection
    token_id = uuid.uuid4()
    async with engine.begin() as conn:
        await record_heartbeat(conn, tables, heard_at=utc_now())
        await record_revoked(conn, tables, token_id=token_id, at=utc_now())
    await issue(engine, tables, token_id)
    assert await role(engine, tables) is None


async def test_no_token_works_while_the_feed_is_silent_for_longer_than_the_bound(
    projection: tuple[AsyncEngine, TokenProjectionTables],
) -> None:
    engine, tables = projection
    await issue(engine, tables, uuid.uuid4())
    assert await role(engine, tables) is None  # never heard from intake
    async with engine.begin() as conn:
        await record_heartbeat(conn, tables, heard_at=utc_now() - timedelta(minutes=2))
    assert await role(engine, tables) is None
    async with engine.begin() as conn:
        await record_heartbeat(conn, tables, heard_at=utc_now())
        # An older heartbeat arriving late does not move the feed back.
        await record_heartbeat(conn, tables, heard_at=utc_now() - timedelta(minutes=5))
    assert await role(engine, tables) == "admin"
    assert await role(engine, tables, max_staleness=timedelta(0)) is None
