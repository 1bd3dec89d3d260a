"""What routing and sla know of intake's bearer tokens, so their admin APIs honour them with
no call to intake: a projection of intake's token events, kept in each service's own database.

Intake (spoc_intake.tokens) publishes credential.token_issued (the token's hash, role, subject
and expiry, never the token) and credential.token_revoked in the same transaction as the
change, announces every live token again when it starts (so an empty table fills without any
call to intake), and publishes credential.heartbeat every 20 seconds (`TokenFeedHeartbeat`).
Routing and sla keep the tables defined here (their models and migrations), apply those events
in their handlers with `record_issued`, `record_revoked` and `record_heartbeat` (order-free: a
revocation that overtakes its issue leaves a tombstone the issue cannot revive), and hand a
`TokenProjection` to spoc_platform.admin, whose guard looks `spoc_` tokens of role admin up
here. The promise, "a revoked token stops working within a minute", holds even when the bus
does not: while the last heartbeat is older than `max_staleness`, no token works here at all
(fail closed), since a revocation may be on its way. Nor while the heartbeats say intake honours
another set of tokens than this projection does, for longer than `REVOCATION_GRACE`: the
heartbeat's `live_digest` (spoc_contracts.live_token_digest) of intake's live token ids differs
from the digest of this projection's. A revocation was lost on the way (a dead letter not yet
replayed) or an issue was missed (a fresh database, a dead letter), and the projection cannot
tell which token is wrong. A count alone would not do: a lost revocation and a missed issue
cancel out in it. Intake re-announces every live token and every unexpired revocation every few
minutes (spoc_intake.tokens.REANNOUNCE_EVERY), so a projection out of step catches up on its
own; `TokenProjection` logs when it starts and stops refusing every token, and exports
spoc_token_feed_behind (spoc_platform.metrics) for the operator."""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    case,
    func,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from spoc_contracts import (
    CredentialFeedHeartbeat,
    Envelope,
    TokenIssued,
    TokenRevoked,
    live_token_digest,
)
from spoc_platform import metrics
from spoc_platform.consumer import Handler, bind_handler
from spoc_platform.db import UtcDateTime, insert_for, utc_now
from spoc_platform.unit_of_work import UnitOfWork

# The bound on how late a revocation may take effect; heartbeats must come well within it.
MAX_STALENESS = timedelta(minutes=1)
# How long this projection may hold another set of live tokens than intake's heartbeat before it
# honours none. Not zero: a revocation and the next heartbeat (or an issue and the heartbeat
# that counted it) are different event types and may arrive in either order; a heartbeat comes
# every 20 s, so two of them still saying so mean the event is lost, not late.
REVOCATION_GRACE = timedelta(seconds=45)
# What intake's tokens look like (spoc_intake.tokens): anything else is not looked up.
TOKEN_PREFIX = "spoc_"
_FEED_ROW = 1
# Why a projection honours no token at all (`feed_refusal`).
FeedRefusal = Literal["stale", "behind"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenProjectionTables:
    token: Table
    # One row: when intake's token feed was last heard from.
    feed: Table


@dataclass(frozen=True)
class ProjectedCaller:
    token_id: uuid.UUID
    role: str
    subject_id: str | None


def define_token_projection(metadata: MetaData) -> TokenProjectionTables:
    token = Table(
        "token_projection",
        metadata,
        Column("token_hash", String(64), primary_key=True),
        Column("token_id", Uuid, nullable=False, unique=True),
        # None for a tombstone: revoked before its issue was heard of.
        Column("role", String(16), nullable=True),
        Column("subject_id", String(64), nullable=True),
        Column("expires_at", UtcDateTime, nullable=True),
        Column("revoked_at", UtcDateTime, nullable=True),
    )
    feed = Table(
        "token_feed",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("heard_at", UtcDateTime, nullable=False),
        # The last heartbeat's count of tokens intake honours (None: an intake without it).
        Column("live_tokens", Integer, nullable=True),
        # The last heartbeat's digest of their ids (None: an intake without it).
        Column("live_digest", String(64), nullable=True),
        # Since which heartbeat this projection has held another set of live tokens than intake
        # (or more of them, by an intake that sends only a count); None while in step.
        Column("behind_since", UtcDateTime, nullable=True),
    )
    return TokenProjectionTables(token=token, feed=feed)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def record_issued(
    conn: AsyncConnection,
    tables: TokenProjectionTables,
    *,
    token_id: uuid.UUID,
    token_hash: str,
    role: str,
    subject_id: str | None,
    expires_at: datetime | None,
) -> None:
    """Idempotent; never clears a revocation already recorded."""
    insert = insert_for(conn.dialect.name, tables.token)
    await conn.execute(
        insert.values(
            token_hash=token_hash,
            token_id=token_id,
            role=role,
            subject_id=subject_id,
            expires_at=expires_at,
            revoked_at=None,
        ).on_conflict_do_update(
            index_elements=[tables.token.c.token_id],
            set_={
                "token_hash": insert.excluded.token_hash,
                "role": insert.excluded.role,
                "subject_id": insert.excluded.subject_id,
                "expires_at": insert.excluded.expires_at,
            },
        )
    )


async def record_revoked(
    conn: AsyncConnection, tables: TokenProjectionTables, *, token_id: uuid.UUID, at: datetime
) -> None:
    """Idempotent; before the issue is heard of, a tombstone keyed by the id stands in."""
    changed = await conn.execute(
        update(tables.token)
        .where(tables.token.c.token_id == token_id, tables.token.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    if changed.rowcount:
        return
    insert = insert_for(conn.dialect.name, tables.token)
    # The hash is unknown yet: a placeholder no SHA-256 hex digest can equal.
    await conn.execute(
        insert.values(
            token_hash=f"revoked:{token_id}",
            token_id=token_id,
            role=None,
            subject_id=None,
            expires_at=None,
            revoked_at=at,
        ).on_conflict_do_nothing(index_elements=[tables.token.c.token_id])
    )


async def record_heartbeat(
    conn: AsyncConnection,
    tables: TokenProjectionTables,
    *,
    heard_at: datetime,
    live_tokens: int | None = None,
    live_digest: str | None = None,
) -> None:
    """Notes intake alive at `heard_at`; with `live_digest`, also whether this projection held
    another set of tokens live than intake did then (with only `live_tokens`, more of them; see
    `REVOCATION_GRACE`). An older heartbeat arriving late changes nothing."""
    live_ids = await _live_token_ids(conn, tables, heard_at)
    if live_digest is not None:
        behind = live_token_digest(live_ids) != live_digest
    else:
        behind = live_tokens is not None and len(live_ids) > live_tokens
    insert = insert_for(conn.dialect.name, tables.feed)
    await conn.execute(
        insert.values(
            id=_FEED_ROW,
            heard_at=heard_at,
            live_tokens=live_tokens,
            live_digest=live_digest,
            behind_since=heard_at if behind else None,
        ).on_conflict_do_update(
            index_elements=[tables.feed.c.id],
            set_={
                "heard_at": insert.excluded.heard_at,
                "live_tokens": insert.excluded.live_tokens,
                "live_digest": insert.excluded.live_digest,
                # Still behind: since the first heartbeat that said so, not the latest.
                "behind_since": case(
                    (insert.excluded.behind_since.is_(None), null()),
                    else_=func.coalesce(tables.feed.c.behind_since, insert.excluded.behind_since),
                ),
            },
            where=tables.feed.c.heard_at < insert.excluded.heard_at,
        )
    )


async def _live_token_ids(
    conn: AsyncConnection, tables: TokenProjectionTables, at: datetime
) -> list[uuid.UUID]:
    """The tokens this projection honours at `at` (intake's moment, as the heartbeat counts).
    Read whole at each heartbeat rather than kept as a running digest: tokens are few (hundreds
    at most), and expiry, which is a matter of time and not of events, then needs no care."""
    token = tables.token
    query = select(token.c.token_id).where(
        token.c.role.is_not(None),
        token.c.revoked_at.is_(None),
        or_(token.c.expires_at.is_(None), token.c.expires_at > at),
    )
    return list((await conn.execute(query)).scalars().all())


async def feed_refusal(
    conn: AsyncConnection,
    tables: TokenProjectionTables,
    *,
    now: datetime,
    max_staleness: timedelta = MAX_STALENESS,
    revocation_grace: timedelta = REVOCATION_GRACE,
) -> FeedRefusal | None:
    """Why this projection honours no token at all at `now`: "stale" (no heartbeat for
    `max_staleness`, or none ever) or "behind" (out of step with intake for `revocation_grace`);
    None while it honours the tokens it holds."""
    feed = tables.feed
    heard = (
        await conn.execute(
            select(feed.c.heard_at, feed.c.behind_since).where(feed.c.id == _FEED_ROW)
        )
    ).first()
    if heard is None or heard.heard_at < now - max_staleness:
        return "stale"
    if heard.behind_since is not None and heard.behind_since <= now - revocation_grace:
        return "behind"
    return None


async def caller_of(
    conn: AsyncConnection,
    tables: TokenProjectionTables,
    token: str,
    *,
    now: datetime,
    max_staleness: timedelta = MAX_STALENESS,
    revocation_grace: timedelta = REVOCATION_GRACE,
) -> ProjectedCaller | None:
    """The live token's holder, or None: unknown, revoked, expired, or the feed too stale, or
    too long out of step with intake, to be sure it is not revoked (`feed_refusal`)."""
    if not _looks_like_a_token(token):
        return None
    refusal = await feed_refusal(
        conn, tables, now=now, max_staleness=max_staleness, revocation_grace=revocation_grace
    )
    if refusal is not None:
        return None
    return await _holder_of(conn, tables, token, now=now)


def _looks_like_a_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX) and len(token) <= 100


async def _holder_of(
    conn: AsyncConnection, tables: TokenProjectionTables, token: str, *, now: datetime
) -> ProjectedCaller | None:
    # Looked up by hash: 256 random bits behind it, nothing to compare in constant time.
    digest = hash_token(token)
    row = (
        await conn.execute(select(tables.token).where(tables.token.c.token_hash == digest))
    ).first()
    if row is None or row.role is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    return ProjectedCaller(token_id=row.token_id, role=row.role, subject_id=row.subject_id)


class FeedRefusalLog:
    """Says when a service starts refusing every token and when it stops, once each (not on
    every refused request), in its log and in spoc_token_feed_behind: otherwise each admin
    only sees a 401 and no one knows why. Per process: each replica says it for itself."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.refusal: FeedRefusal | None = None

    def note(self, refusal: FeedRefusal | None) -> None:
        metrics.token_feed_behind.labels(self.service).set(0 if refusal is None else 1)
        if refusal == self.refusal:
            return
        if refusal == "stale":
            log.warning(
                "%s refuses every admin token: intake's token feed is stale (no recent "
                "credential.heartbeat); see docs/runbooks.md",
                self.service,
            )
        elif refusal == "behind":
            log.warning(
                "%s refuses every admin token: its tokens differ from intake's (a token event "
                "was lost) until intake's next re-announcement; see docs/runbooks.md",
                self.service,
            )
        else:
            log.warning(
                "%s honours admin tokens again: intake's token feed is current", self.service
            )
        self.refusal = refusal


@dataclass(frozen=True)
class TokenProjection:
    """A service's projection, as its admin API asks it: who holds this token, now."""

    engine: AsyncEngine
    tables: TokenProjectionTables
    max_staleness: timedelta = MAX_STALENESS
    revocation_grace: timedelta = REVOCATION_GRACE
    # Names the service in the log and the gauge.
    service: str = "unnamed"
    refusals: FeedRefusalLog = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "refusals", FeedRefusalLog(self.service))

    async def caller(self, token: str) -> ProjectedCaller | None:
        if not _looks_like_a_token(token):
            return None
        async with self.engine.connect() as conn:
            now = utc_now()
            if await self._refusal(conn, now) is not None:
                return None
            return await _holder_of(conn, self.tables, token, now=now)

    async def check_feed(self) -> FeedRefusal | None:
        """Why no token is honoured now, if none is (see `feed_refusal`); also logged and
        exported. For a scrape (spoc_platform.metrics.refresh_on_scrape), so the gauge is
        current even while no admin calls."""
        async with self.engine.connect() as conn:
            return await self._refusal(conn, utc_now())

    async def _refusal(self, conn: AsyncConnection, now: datetime) -> FeedRefusal | None:
        refusal = await feed_refusal(
            conn,
            self.tables,
            now=now,
            max_staleness=self.max_staleness,
            revocation_grace=self.revocation_grace,
        )
        self.refusals.note(refusal)
        return refusal

    def export_on_scrape(self) -> None:
        async def refresh() -> None:
            await self.check_feed()

        metrics.refresh_on_scrape(f"{self.service} token feed", refresh)


# Intake's bearer tokens, kept for the admin API (spoc_platform.token_projection): idempotent
# and order-free, so neither a redelivery nor a revocation overtaking its issue needs care here.


async def on_token_issued(
    event: TokenIssued, *, envelope: Envelope, uow: UnitOfWork, tables: TokenProjectionTables
) -> None:
    await record_issued(
        uow.conn,
        tables,
        token_id=event.token_id,
        token_hash=event.token_hash,
        role=event.role,
        subject_id=event.subject_id,
        expires_at=event.expires_at,
    )


async def on_token_revoked(
    event: TokenRevoked, *, envelope: Envelope, uow: UnitOfWork, tables: TokenProjectionTables
) -> None:
    await record_revoked(uow.conn, tables, token_id=event.token_id, at=event.revoked_at)


async def on_credential_heartbeat(
    event: CredentialFeedHeartbeat,
    *,
    envelope: Envelope,
    uow: UnitOfWork,
    tables: TokenProjectionTables,
) -> None:
    # Intake's time, not ours: a heartbeat that waited in the queue proves only that moment.
    await record_heartbeat(
        uow.conn,
        tables,
        heard_at=event.at,
        live_tokens=event.live_tokens,
        live_digest=event.live_digest,
    )


def feed_handlers(tables: TokenProjectionTables) -> dict[str, Handler]:
    """The token feed's handlers, bound to a service's projection tables: one copy for every
    service whose admin API honours intake's tokens."""
    return {
        TokenIssued.TYPE: bind_handler(on_token_issued, tables=tables),
        TokenRevoked.TYPE: bind_handler(on_token_revoked, tables=tables),
        CredentialFeedHeartbeat.TYPE: bind_handler(on_credential_heartbeat, tables=tables),
    }
