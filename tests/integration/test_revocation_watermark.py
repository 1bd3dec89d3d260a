"""A lost revocation fails the token projection closed: intake's credential.heartbeat counts
the tokens it honours, and a projection that holds more live than that for longer than
`REVOCATION_GRACE` (a credential.token_revoked dead-lettered and not yet replayed) honours no
token until it has caught up. Holding fewer (an issue not heard yet, a new consumer) is safe."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_contracts import CredentialFeedHeartbeat, Envelope, Event, TokenIssued
from spoc_intake.tokens import TokenFeedHeartbeat, create_token, revoke_token
from spoc_platform.db import create_engine, new_metadata, utc_now
from spoc_platform.token_projection import (
    REVOCATION_GRACE,
    TokenProjectionTables,
    caller_of,
    define_token_projection,
    hash_token,
    record_heartbeat,
    record_issued,
    record_revoked,
)
from tests.harness import envelope, service
from tests.support import eventually

pytestmark = pytest.mark.integration
KEPT = "spoc_" + "k" * 43
LOST = "spoc_" + "l" * 43
KEPT_ID, LOST_ID = uuid.uuid4(), uuid.uuid4()
# Longer ago than the grace, yet well within the minute a silent feed is allowed.
BEYOND_GRACE = REVOCATION_GRACE + timedelta(seconds=5)


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


async def issue(
    engine: AsyncEngine,
    tables: TokenProjectionTables,
    token: str,
    token_id: uuid.UUID,
    expires_at: datetime | None = None,
) -> None:
    async with engine.begin() as conn:
        await record_issued(
            conn,
            tables,
            token_id=token_id,
            token_hash=hash_token(token),
            role="admin",
            subject_id=None,
            expires_at=expires_at,
        )


async def beat(
    engine: AsyncEngine, tables: TokenProjectionTables, ago: timedelta, live: int | None
) -> None:
    async with engine.begin() as conn:
        await record_heartbeat(conn, tables, heard_at=utc_now() - ago, live_tokens=live)


async def works(engine: AsyncEngine, tables: TokenProjectionTables, token: str = KEPT) -> bool:
    async with engine.connect() as conn:
        return await caller_of(conn, tables, token, now=utc_now()) is not None


async def test_a_lost_revocation_fails_every_token_closed_after_the_grace_until_replayed(
    projection: tuple[AsyncEngine, TokenProjectionTables],
) -> None:
    engine, tables = projection
    await issue(engine, tables, KEPT, KEPT_ID)
    await issue(engine, tables, LOST, LOST_ID)
    await beat(engine, tables, BEYOND_GRACE + timedelta(seconds=1), live=2)
    assert await works(engine, tables) and await works(engine, tables, LOST)

    # Intake revoked LOST; its token_revoked went to a dead letter. The heartbeats say so.
    await beat(engine, tables, BEYOND_GRACE, live=1)
    await beat(engine, tables, timedelta(seconds=2), live=1)
    assert not await works(engine, tables, LOST)
    assert not await works(engine, tables)  # which one was revoked, no one here can tell
    # An older heartbeat arriving late does not clear it.
    await beat(engine, tables, BEYOND_GRACE + timedelta(seconds=1), live=2)
    assert not await works(engine, tables)

    # The dead letter is replayed; the next heartbeat finds the projection caught up.
    async with engine.begin() as conn:
        await record_revoked(conn, tables, token_id=LOST_ID, at=utc_now())
    await beat(engine, tables, timedelta(seconds=1), live=1)
    assert await works(engine, tables)
    assert not await works(engine, tables, LOST)


async def test_within_the_grace_a_revocation_and_a_heartbeat_may_arrive_in_either_order(
    projection: tuple[AsyncEngine, TokenProjectionTables],
) -> None:
    engine, tables = projection
    await issue(engine, tables, KEPT, KEPT_ID)
    await issue(engine, tables, LOST, LOST_ID)
    # The heartbeat counted after the revocation arrives before the revocation itself.
    await beat(engine, tables, timedelta(seconds=1), live=1)
    assert await works(engine, tables) and await works(engine, tables, LOST)
    async with engine.begin() as conn:
        await record_revoked(conn, tables, token_id=LOST_ID, at=utc_now())
    await beat(engine, tables, timedelta(0), live=1)
    assert await works(engine, tables) and not await works(engine, tables, LOST)


@pytest.mark.parametrize(
    "live",
    [None, 5],
    ids=["an intake that sends no count", "a projection holding fewer than intake"],
)
async def test_no_count_or_a_projection_behind_on_issues_keeps_tokens_working(
    projection: tuple[AsyncEngine, TokenProjectionTables], live: int | None
) -> None:
    engine, tables = projection
    await issue(engine, tables, KEPT, KEPT_ID)
    await beat(engine, tables, BEYOND_GRACE, live=live)
    await beat(engine, tables, timedelta(seconds=1), live=live)
    assert await works(engine, tables)


async def test_tokens_are_counted_live_at_the_heartbeats_moment(
    projection: tuple[AsyncEngine, TokenProjectionTables],
) -> None:
    """A token that expired between intake's count and now is no lost revocation."""
    engine, tables = projection
    await issue(engine, tables, KEPT, KEPT_ID)
    await issue(engine, tables, LOST, LOST_ID, expires_at=utc_now() - timedelta(seconds=10))
    await beat(engine, tables, BEYOND_GRACE, live=1)  # LOST had expired then: one live
    await beat(engine, tables, timedelta(seconds=1), live=1)
    assert await works(engine, tables)


async def test_intakes_heartbeat_counts_the_tokens_it_honours(sqlite_url: str) -> None:
    async with service("intake", sqlite_url) as intake:
        unit_of_work = intake.runtime.unit_of_work
        kept = await create_token(unit_of_work, role="integration", name="monitor")
        revoked = await create_token(unit_of_work, role="integration", name="old script")
        await create_token(
            unit_of_work,
            role="integration",
            name="short-lived",
            expires_at=utc_now() + timedelta(milliseconds=200),
        )
        assert await revoke_token(unit_of_work, revoked.id)
        await TokenFeedHeartbeat(unit_of_work).beat()
        [first] = await intake.published(CredentialFeedHeartbeat.TYPE)
        assert CredentialFeedHeartbeat.model_validate(first.data).live_tokens == 2

        async def counted_without_the_expired_one() -> bool:
            await TokenFeedHeartbeat(unit_of_work).beat()
            latest = (await intake.published(CredentialFeedHeartbeat.TYPE))[-1]
            return bool(CredentialFeedHeartbeat.model_validate(latest.data).live_tokens == 1)

        assert await eventually(counted_without_the_expired_one, timeout=5.0)
        assert await revoke_token(unit_of_work, kept.id)
        await TokenFeedHeartbeat(unit_of_work).beat()
        latest = (await intake.published(CredentialFeedHeartbeat.TYPE))[-1]
        assert CredentialFeedHeartbeat.model_validate(latest.data).live_tokens == 0


def from_intake(event: Event) -> Envelope:
    return envelope(event, source="intake").model_copy(update={"ticket_id": None})


async def test_routing_refuses_every_token_once_its_feed_says_a_revocation_is_lost(
    tmp_path: Path,
) -> None:
    async with service("routing", f"sqlite+aiosqlite:///{tmp_path / 'routing.sqlite3'}") as routing:
        for token, token_id in ((KEPT, KEPT_ID), (LOST, LOST_ID)):
            issued = TokenIssued(
                token_id=token_id, token_hash=hash_token(token), role="admin", issued_at=utc_now()
            )
            await routing.deliver(from_intake(issued))
        projection = routing.container.bearer_tokens
        counted = CredentialFeedHeartbeat(
            at=utc_now() - BEYOND_GRACE - timedelta(seconds=2), live_tokens=2
        )
        await routing.deliver(from_intake(counted))
        assert await projection.caller(KEPT) is not None

        # Intake revoked LOST; routing never heard. Two heartbeats, the grace apart, say so.
        for ago in (BEYOND_GRACE, timedelta(seconds=1)):
            await routing.deliver(
                from_intake(CredentialFeedHeartbeat(at=utc_now() - ago, live_tokens=1))
            )
        assert await projection.caller(KEPT) is None
