"""A lost revocation fails the token projection closed: intake's credential.heartbeat counts
and digests the tokens it honours, and a projection that holds another set live for longer than
`REVOCATION_GRACE` (a credential.token_revoked dead-lettered and not yet replayed, an issue
missed) honours no token until it has caught up, even when a lost revocation and a missed issue
leave the counts equal. Intake's periodic re-announcement is how it catches up; a log line and
the spoc_token_feed_behind gauge tell the operator meanwhile. From an intake that sends only a
count, holding fewer is safe."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_contracts import (
    CredentialFeedHeartbeat,
    Envelope,
    Event,
    TokenIssued,
    TokenRevoked,
    live_token_digest,
)
from spoc_intake.tokens import TokenFeedHeartbeat, create_token, list_tokens, revoke_token
from spoc_platform import metrics
from spoc_platform.db import create_engine, new_metadata, utc_now
from spoc_platform.token_projection import (
    REVOCATION_GRACE,
    TokenProjection,
    TokenProjectionTables,
    caller_of,
    define_token_projection,
    hash_token,
    record_heartbeat,
    record_issued,
    record_revoked,
)
from spoc_routing.models import TOKENS as ROUTING_TOKENS
from tests.harness import envelope, service
from tests.support import eventually

pytestmark = pytest.mark.integration
KEPT = "spoc_" + "k" * 43
LOST = "spoc_" + "l" * 43
MISSED = "spoc_" + "m" * 43
KEPT_ID, LOST_ID, MISSED_ID = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
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
    engine: AsyncEngine,
    tables: TokenProjectionTables,
    ago: timedelta,
    live: int | None,
    digest: str | None = None,
) -> None:
    async with engine.begin() as conn:
        await record_heartbeat(
            conn, tables, heard_at=utc_now() - ago, live_tokens=live, live_digest=digest
        )


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


async def test_a_lost_revocation_and_a_missed_issue_do_not_cancel_out(
    projection: tuple[AsyncEngine, TokenProjectionTables],
) -> None:
    """Intake honours KEPT and MISSED, having revoked LOST; the projection heard neither the
    revocation nor MISSED's issue. Two tokens each side: only the digest tells them apart."""
    engine, tables = projection
    await issue(engine, tables, KEPT, KEPT_ID)
    await issue(engine, tables, LOST, LOST_ID)
    intakes = live_token_digest([MISSED_ID, KEPT_ID])
    await beat(engine, tables, BEYOND_GRACE, live=2, digest=intakes)
    await beat(engine, tables, timedelta(seconds=2), live=2, digest=intakes)
    assert not await works(engine, tables, LOST)
    assert not await works(engine, tables)

    # Intake's next re-announcement: KEPT and MISSED issued, LOST revoked, in any order.
    async with engine.begin() as conn:
        await record_revoked(conn, tables, token_id=LOST_ID, at=utc_now())
    await issue(engine, tables, MISSED, MISSED_ID)
    await beat(engine, tables, timedelta(seconds=1), live=2, digest=intakes)
    assert await works(engine, tables) and await works(engine, tables, MISSED)
    assert not await works(engine, tables, LOST)


async def test_a_matching_digest_keeps_tokens_working_and_a_mismatch_only_after_the_grace(
    projection: tuple[AsyncEngine, TokenProjectionTables],
) -> None:
    engine, tables = projection
    await issue(engine, tables, KEPT, KEPT_ID)
    # Expired before the heartbeats' moment: in neither side's digest.
    await issue(engine, tables, LOST, LOST_ID, expires_at=utc_now() - BEYOND_GRACE * 2)
    await beat(engine, tables, BEYOND_GRACE, live=1, digest=live_token_digest([KEPT_ID]))
    await beat(engine, tables, timedelta(seconds=1), live=1, digest=live_token_digest([KEPT_ID]))
    assert await works(engine, tables)
    # A projection missing an issue differs too, but only as long as the grace is it honoured.
    await beat(engine, tables, timedelta(0), live=2, digest=live_token_digest([KEPT_ID, MISSED_ID]))
    assert await works(engine, tables)


@pytest.mark.parametrize(
    "live",
    [None, 5],
    ids=["an intake that sends no count", "a projection holding fewer than a count-only intake"],
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
        counted = CredentialFeedHeartbeat.model_validate(first.data)
        assert counted.live_tokens == 2
        [short_lived] = [
            t for t in await list_tokens(intake.runtime.engine) if t.name == "short-lived"
        ]
        assert counted.live_digest == live_token_digest([short_lived.id, kept.id])

        async def counted_without_the_expired_one() -> bool:
            await TokenFeedHeartbeat(unit_of_work).beat()
            latest = (await intake.published(CredentialFeedHeartbeat.TYPE))[-1]
            return bool(CredentialFeedHeartbeat.model_validate(latest.data).live_tokens == 1)

        assert await eventually(counted_without_the_expired_one, timeout=5.0)
        assert await revoke_token(unit_of_work, kept.id)
        await TokenFeedHeartbeat(unit_of_work).beat()
        latest = (await intake.published(CredentialFeedHeartbeat.TYPE))[-1]
        assert CredentialFeedHeartbeat.model_validate(latest.data).live_tokens == 0
        assert CredentialFeedHeartbeat.model_validate(latest.data).live_digest == "0" * 64


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


def feed_behind(service_name: str) -> float | None:
    return REGISTRY.get_sample_value("spoc_token_feed_behind", {"service": service_name})


def said(caplog: pytest.LogCaptureFixture, service_name: str) -> list[str]:
    """What the projection logged of this service: others, from earlier tests in this process
    (their gauges refreshed on scrape too), may speak as well."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "spoc_platform.token_projection"
        and r.getMessage().startswith(f"{service_name} ")
    ]


async def test_routing_refuses_every_token_until_intakes_re_announcement_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The cancel-out case end to end: routing heard KEPT and LOST; intake then revoked LOST and
    issued MISSED, and routing heard neither. Intake's periodic re-announcement repairs it."""
    async with (
        service("intake", f"sqlite+aiosqlite:///{tmp_path / 'intake.sqlite3'}") as intake,
        service("routing", f"sqlite+aiosqlite:///{tmp_path / 'routing.sqlite3'}") as routing,
    ):
        unit_of_work = intake.runtime.unit_of_work
        kept = await create_token(unit_of_work, role="admin", name="kept")
        lost = await create_token(unit_of_work, role="admin", name="lost")
        for issued in await intake.published(TokenIssued.TYPE):
            await routing.deliver(issued)
        await revoke_token(unit_of_work, lost.id)
        missed = await create_token(unit_of_work, role="admin", name="missed")
        # No grace, so the test need not wait 45 s for the heartbeats to be believed.
        projection = TokenProjection(
            routing.runtime.engine, ROUTING_TOKENS, revocation_grace=timedelta(0), service="t"
        )
        caplog.set_level(logging.WARNING, logger="spoc_platform.token_projection")

        async def heartbeat_delivered(reannounce: bool) -> None:
            seen = len(await intake.published())
            await TokenFeedHeartbeat(unit_of_work, reannounce_every=1 if reannounce else 2).beat()
            for sent in (await intake.published())[seen:]:
                await routing.deliver(sent)

        await heartbeat_delivered(reannounce=False)
        for token in (kept.token, lost.token, missed.token):
            assert await projection.caller(token) is None
        assert feed_behind("t") == 1
        assert said(caplog, "t") == [
            "t refuses every admin token: its tokens differ from intake's (a token event was "
            "lost) until intake's next re-announcement; see docs/runbooks.md"
        ]

        await heartbeat_delivered(reannounce=True)
        assert await projection.caller(kept.token) is not None
        assert await projection.caller(missed.token) is not None
        assert await projection.caller(lost.token) is None
        assert feed_behind("t") == 0
        assert said(caplog, "t")[1:] == [
            "t honours admin tokens again: intake's token feed is current"
        ]
        re_announced = await intake.published(TokenRevoked.TYPE)
        assert [TokenRevoked.model_validate(e.data).token_id for e in re_announced] == [
            lost.id,
            lost.id,
        ]


async def test_the_gauge_says_a_silent_feed_on_scrape_with_no_admin_calling(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="spoc_platform.token_projection")
    async with service("sla", f"sqlite+aiosqlite:///{tmp_path / 'sla.sqlite3'}") as sla:
        await metrics.refresh_gauges()
        assert feed_behind("sla") == 1  # no heartbeat heard yet
        heartbeat = CredentialFeedHeartbeat(
            at=utc_now(), live_tokens=0, live_digest=live_token_digest([])
        )
        await sla.deliver(from_intake(heartbeat))
        await metrics.refresh_gauges()
        await metrics.refresh_gauges()
        assert feed_behind("sla") == 0
        assert said(caplog, "sla") == [
            "sla refuses every admin token: intake's token feed is stale (no recent "
            "credential.heartbeat); see docs/runbooks.md",
            "sla honours admin tokens again: intake's token feed is current",
        ]
